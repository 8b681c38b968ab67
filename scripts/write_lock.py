#!/usr/bin/env python
"""Write the lock of tested versions (make lock): requirements/constraints.txt from this environment's packages,
if make test last passed on exactly them. See :mod:`embedft.run.version_lock`."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedft.cli import common
from embedft.run.version_lock import LOCK_FILE, installed_freeze, write_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tested", type=Path, required=True, help="pip freeze written by make test when it passed.")
    parser.add_argument("--output", type=Path, default=LOCK_FILE, help="The lock file (default: %(default)s).")
    args = parser.parse_args(argv)
    count = write_lock(installed_freeze(), args.tested, args.output)
    print(f"{args.output}: {count} packages pinned (torch is installed from TORCH_SPEC)")
    return 0


if __name__ == "__main__":
    common.run(main)
