#!/usr/bin/env python
"""Retrieve the top-k answers for query texts with a saved model (embedft infer).

The work is done by :func:`embedft.cli.app.infer_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft.cli import common
from embedft.cli.app import infer_main

if __name__ == "__main__":
    common.run(infer_main)
