#!/usr/bin/env python
"""Rebuild a run's report.md and PNG plots (embedft report).

The work is done by :func:`embedft.commands.report_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft import cli
from embedft.commands import report_main

if __name__ == "__main__":
    cli.run(report_main)
