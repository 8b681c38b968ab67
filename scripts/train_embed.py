#!/usr/bin/env python
"""Fine-tune an embedding model: data -> split -> hard-negative mining -> baseline eval -> MNRL training -> final eval.

Usage:
    python scripts/train_embed.py --config configs/run_embedding_mnrl.yaml [key=value ...]
    python scripts/train_embed.py --resume outputs/<run>|latest     # continue an interrupted run

An interrupted run (crash, SIGKILL, power loss) resumes from its last checkpoint with the same split, the same
mined negatives (cached in the run folder) and the optimizer state, and ends at the same total step count.
"""

from __future__ import annotations

import argparse

from embedft import cli
from embedft.config import load_config
from embedft.errors import ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, config_default="configs/run_embedding_mnrl.yaml")
    parser.add_argument(
        "--resume", default=None, metavar="RUN", help="Resume an interrupted run: its folder, or 'latest'."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    if args.resume is not None and args.overrides:
        raise ConfigError("a resumed run keeps its own config: drop the key=value overrides (SET) with RESUME")
    cli.setup_logging()

    from embedft.pipeline import train_embed
    from embedft.report import format_summary

    finished = train_embed(config, resume=args.resume)
    if finished is not None:  # None: a torchrun process other than rank 0, which reports nothing
        run_dir, metrics = finished
        print(format_summary(metrics, run_dir), flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
