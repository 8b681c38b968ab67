#!/usr/bin/env python
"""Scale benchmark: load and mine N pairs against the full pool, evaluate on the bounded pool, train a few steps.

The pairs are synthetic (realistic lengths, topics in domains; see embedft.bench.synthetic) unless --data is given. The
run is an ordinary python -m embedft train run with configs/bench-scale.yaml (static miner, bounded evaluation, a few
steps) and every cache in OUT/cache, so it starts cold. Afterwards the approximate search's candidate recall is
measured on a sample of training queries against the exact top range_max. Writes OUT/results.json.

Usage:
    python scripts/bench_scale.py --pairs 100000 --output-dir outputs/bench-scale/100k [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from embedft.cli import common
from embedft.errors import ConfigError, EmbedftError
from embedft.io import read_json, write_json
from embedft.logs import setup_logging
from embedft.run.files import RunFiles


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, required=True, help="Number of synthetic pairs to generate.")
    parser.add_argument("--output-dir", required=True, help="Folder for the data, caches, run and results.json.")
    parser.add_argument("--data", default=None, help="Use this data set instead of synthetic pairs.")
    parser.add_argument("--config", default="configs/bench-scale.yaml", help="Config (default: %(default)s).")
    parser.add_argument("--recall-queries", type=int, default=1000, help="Queries sampled for candidate recall.")
    common.add_overrides(parser, "Further config overrides.")
    return common.parse_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pairs < 10 and args.data is None:
        raise ConfigError(f"--pairs must be at least 10, got {args.pairs}")
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging()
    from embedft.bench.scale import candidate_recall, scale_results
    from embedft.bench.synthetic import write_synthetic_pairs

    data = args.data
    if data is None:
        data = str(output_dir / f"pairs-{args.pairs}.jsonl")
        if not Path(data).is_file():
            started = time.perf_counter()
            write_synthetic_pairs(data, args.pairs, seed=0)
            print(f"Generated {args.pairs:,} synthetic pairs in {time.perf_counter() - started:.1f} s: {data}")
    run_name = "run"
    if (output_dir / run_name).exists():
        raise EmbedftError(f"{output_dir / run_name} exists: give a new --output-dir (results are never overwritten)")
    command = [
        sys.executable,
        "-m",
        "embedft",
        "train",
        "--config",
        args.config,
        f"dataset_name={data}",
        f"cache_dir={output_dir / 'cache'}",
        f"output_dir={output_dir}",
        f"run_name={run_name}",
        *args.overrides,
    ]
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    env = {**os.environ, "HF_DATASETS_CACHE": str(output_dir / "cache" / "datasets")}
    if subprocess.run(command, env=env).returncode != 0:
        raise EmbedftError("the benchmark run failed (see its output above)")
    wall = time.perf_counter() - started
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    run_dir = output_dir / run_name
    metrics = read_json(RunFiles(run_dir).metrics)
    recall = candidate_recall(run_dir, args.recall_queries)
    results = scale_results(metrics, recall, wall, peak_children)
    results["machine"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs"
    results["command"] = " ".join(["python", "scripts/bench_scale.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(output_dir / "results.json", results)
    print(f"\nResults: {output_dir / 'results.json'}")
    for key in ("pairs", "load_and_mine_seconds", "bounded_eval_seconds", "seconds_to_first_step", "peak_rss_gib"):
        print(f"  {key}: {results[key]}")
    print(f"  search: {results['search']}, candidate_recall: {results['candidate_recall']}")
    return 0


if __name__ == "__main__":
    common.run(main)
