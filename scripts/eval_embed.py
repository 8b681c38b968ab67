#!/usr/bin/env python
"""Evaluate a saved model on the configured evaluation split (embedft eval).

The work is done by :func:`embedft.cli.app.eval_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft.cli import common
from embedft.cli.app import eval_main

if __name__ == "__main__":
    common.run(eval_main)
