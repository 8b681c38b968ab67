"""Texts shortened to one line, for the dry run, the report and the console."""

from __future__ import annotations


def shorten(text: str, width: int = 100) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
