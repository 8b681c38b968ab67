#!/usr/bin/env python
"""Fine-tune an embedding model: data -> split -> hard-negative mining -> baseline eval -> MNRL training -> final eval.

Usage:
    python scripts/train_embed.py --config configs/run_embedding_mnrl.yaml [key=value ...]
    python scripts/train_embed.py --resume outputs/<run>|latest     # continue an interrupted run
    python scripts/train_embed.py --resume latest batch_size=16 training.gradient_accumulation_steps=2

The work is done by :func:`embedft.cli.app.train_main` (also ``embedft train``), which takes the same arguments.
"""

from __future__ import annotations

from embedft.cli import common
from embedft.cli.app import train_main

if __name__ == "__main__":
    common.run(train_main)
