#!/usr/bin/env python
"""Evaluate a saved model on the configured evaluation split (embedft eval).

The work is done by :func:`embedft.commands.eval_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft import cli
from embedft.commands import eval_main

if __name__ == "__main__":
    cli.run(eval_main)
