#!/usr/bin/env python
"""Quality benchmark: run the training job on a data set for several seeds and tabulate baseline vs final.

With --recipes it is an ablation: every recipe (a set of config overrides) over every seed, one table with the
spread between seeds, mining and training time and steps, and the recipe the dev questions pick. Each run is a full,
ordinary run of python -m embedft train (its folder, metrics.json and report are kept).

Usage:
    python scripts/bench_quality.py --data ../shared/data/medquad/pairs.jsonl [--config CONFIG] [--seeds 12 13]
    python scripts/bench_quality.py --data PAIRS --recipes configs/ablation.yaml --seeds 12 13
    python scripts/bench_quality.py --data PAIRS --recipes configs/ablation.yaml --continue outputs/bench-ablation/DATE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedft.cli import common


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Data set: a file, folder, packaged or hub name.")
    parser.add_argument("--config", default="configs/bench-medquad.yaml", help="Config (default: %(default)s).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 13], help="Seeds (default: %(default)s).")
    parser.add_argument("--recipes", help="YAML file of recipes (name: {config.key: value}) to compare.")
    parser.add_argument("--output-dir", default="outputs/bench-quality", help="Parent of the runs.")
    parser.add_argument(
        "--continue",
        dest="continue_from",
        type=Path,
        help="An earlier results folder to add to: its finished runs are read back, a stopped one is resumed.",
    )
    common.add_overrides(parser, "Further config overrides (every run).")
    return common.parse_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    from embedft.bench.quality import load_recipes, run_quality_benchmark

    args = parse_args(argv)
    recipes = load_recipes(args.recipes) if args.recipes else None
    folder, table = run_quality_benchmark(
        args.data, args.config, args.seeds, Path(args.output_dir), args.overrides, recipes, args.continue_from
    )
    print(f"\n{table}\n\nResults: {folder / 'results.md'}")
    return 0


if __name__ == "__main__":
    common.run(main)
