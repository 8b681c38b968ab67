#!/usr/bin/env python
"""Quality benchmark: run the training job on a data set for several seeds and tabulate baseline vs final.

Each seed is a full, ordinary run of scripts/train_embed.py (its folder, metrics.json and report are kept).

Usage:
    python scripts/bench_quality.py --data ../shared/data/medquad/pairs.jsonl [--config CONFIG] [--seeds 12 13]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from embedft import cli
from embedft.errors import ConfigError, EmbedftError
from embedft.report import read_metrics, write_json

METRICS = ("ndcg@10", "mrr@10", "recall@10", "triplet_accuracy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Data set: a file, folder, packaged or hub name.")
    parser.add_argument("--config", default="configs/bench-medquad.yaml", help="Config (default: %(default)s).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 13], help="Seeds (default: %(default)s).")
    parser.add_argument("--output-dir", default="outputs/bench-quality", help="Parent of the runs.")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Further config overrides.")
    return parser.parse_args(argv)


def results_table(rows: list[dict]) -> str:
    """Markdown: one row per seed, baseline -> final per metric, and the wall time."""
    header = "| seed | " + " | ".join(f"{m} baseline | {m} final" for m in METRICS) + " | wall time |"
    lines = [header, "| " + " | ".join(["---"] * (2 * len(METRICS) + 2)) + " |"]
    for row in rows:
        cells = [
            f"{row['baseline'].get(m, float('nan')):.4f} | {row['final'].get(m, float('nan')):.4f}" for m in METRICS
        ]
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + f" | {row['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def write_results(output_dir: Path, args: argparse.Namespace, rows: list[dict]) -> str:
    """``results.json`` and ``results.md`` for the seeds done so far (rewritten after each, so none is lost)."""
    table = results_table(rows)
    summary = {
        "data": args.data,
        "config": args.config,
        "overrides": args.overrides,
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "runs": rows,
    }
    write_json(output_dir / "results.json", summary)
    (output_dir / "results.md").write_text(table + "\n", encoding="utf-8")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fixed = [o for o in args.overrides if o.split("=", 1)[0] in ("output_dir", "run_name", "seed", "dataset_name")]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: the benchmark sets these itself (use --output-dir, --seeds, --data)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = Path(args.output_dir) / stamp
    rows = []
    for seed in args.seeds:
        started = time.perf_counter()
        command = [
            sys.executable,
            str(Path(__file__).parent / "train_embed.py"),
            "--config",
            args.config,
            f"dataset_name={args.data}",
            f"seed={seed}",
            f"output_dir={output_dir}",
            f"run_name=seed{seed}",
            *args.overrides,
        ]
        print(f"== seed {seed}: {' '.join(command)}", flush=True)
        if subprocess.run(command).returncode != 0:
            raise EmbedftError(f"the run for seed {seed} failed (see its output above)")
        metrics = read_metrics(output_dir / f"seed{seed}" / "metrics.json")
        rows.append(
            {
                "seed": seed,
                "baseline": metrics["baseline"],
                "final": metrics["final"],
                "data": metrics["data"],
                "seconds": time.perf_counter() - started,
            }
        )
        table = write_results(output_dir, args, rows)
    print(f"\n{table}\n\nResults: {output_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    cli.run(main)
