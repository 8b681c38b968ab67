#!/usr/bin/env python
"""Rebuild a run's report.md and PNG plots (embedft report).

The work is done by :func:`embedft.cli.app.report_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft.cli import common
from embedft.cli.app import report_main

if __name__ == "__main__":
    common.run(report_main)
