#!/usr/bin/env python
"""Write a model's embeddings of a corpus as a faiss index for serving (embedft export-index).

The work is done by :func:`embedft.cli.app.export_main`, which takes the same arguments; see ``--help``.
"""

from __future__ import annotations

from embedft.cli import common
from embedft.cli.app import export_main

if __name__ == "__main__":
    common.run(export_main)
