#!/usr/bin/env python
"""Rebuild a run's report.md and PNG plots from its metrics.json (and similarities.json).

Usage:
    python scripts/report.py [RUN_DIR]        # default: outputs/latest
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedft import cli
from embedft.errors import OutputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="outputs/latest", help="Run folder (default: %(default)s).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from embedft.report import read_metrics, write_report

    run_dir = Path(args.run_dir).resolve()
    if not (run_dir / "metrics.json").is_file():
        raise OutputError(f"{args.run_dir} has no metrics.json: pass a finished run folder, e.g. RUN=outputs/latest")
    similarities_file = run_dir / "similarities.json"
    similarities = read_metrics(similarities_file) if similarities_file.is_file() else None
    report = write_report(run_dir, read_metrics(run_dir / "metrics.json"), similarities)
    print(f"Report: {report}")
    return 0


if __name__ == "__main__":
    cli.run(main)
