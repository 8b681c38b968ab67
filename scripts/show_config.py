#!/usr/bin/env python
"""Check and show a config: the resolved YAML, one value, the reference table, or create its folders.

Usage:
    python scripts/show_config.py [--config CONFIG] [key=value ...]            # resolved config as YAML
    python scripts/show_config.py --get output_dir                             # one value
    python scripts/show_config.py --reference                                  # Markdown table of every key
    python scripts/show_config.py --make-dirs                                  # create output_dir and cache_dir
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from embedft.cli import common
from embedft.config.parsing import reference
from embedft.errors import ConfigError, OutputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_config_arguments(parser, config_default="configs/run_embedding_mnrl.yaml")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--get", metavar="KEY", help="Print the value of one (dotted) key.")
    action.add_argument("--reference", action="store_true", help="Print every option as a Markdown table.")
    action.add_argument("--make-dirs", action="store_true", help="Create output_dir (and cache_dir when set).")
    return common.parse_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reference:
        print(reference())
        return 0
    config = common.load_checked_config(args.config, args.overrides)
    values = config.to_dict()
    if args.get:
        node = values
        for part in args.get.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"--get {args.get}: no such config key (make config-reference lists them)")
            node = node[part]
        print("" if node is None else node)
    elif args.make_dirs:
        for folder in (config.output_dir, config.cache_dir):
            if folder is None:
                continue
            try:
                Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {folder}: {exc.strerror}: change output_dir / cache_dir") from None
            print(f"ready: {folder}")
    else:
        print(yaml.safe_dump(values, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    common.run(main)
