#!/usr/bin/env python
"""Speed benchmark: a static model distilled from MiniLM (``static:packaged:all-MiniLM-L6-v2``) against MiniLM itself.

Times the one-off distillation (into a fresh temporary cache unless --cache-dir names one that already holds it),
then encodes the same texts (the packaged FAQ's answers, repeated up to --texts) with each model on the CPU: one
warm-up pass, then --repeats timed passes each. Prints a Markdown table (header and one row) with texts per second.

Usage:
    python scripts/bench_static.py [--texts 2000] [--repeats 2] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from itertools import cycle, islice

from embedft.data.sources import load_pairs
from embedft.errors import EmbedftError
from embedft.models.loading import load_model
from embedft.models.static import static_model_path

MINILM = "packaged:all-MiniLM-L6-v2"
STATIC = f"static:{MINILM}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="Texts to encode (default: %(default)s).")
    parser.add_argument("--repeats", type=int, default=2, help="Timed passes per model (default: %(default)s).")
    parser.add_argument("--static-batch-size", type=int, default=512, help="Default: %(default)s (the miner's).")
    parser.add_argument("--minilm-batch-size", type=int, default=64, help="Default: %(default)s.")
    parser.add_argument("--cache-dir", help="Cache folder for the static model (default: a fresh temporary one).")
    return parser.parse_args(argv)


def texts_per_second(model, texts: list[str], batch_size: int, repeats: int) -> list[float]:
    """Encoding throughput of ``model`` on ``texts``: one untimed warm-up pass, then ``repeats`` timed ones."""
    model.encode(texts, batch_size=batch_size)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.encode(texts, batch_size=batch_size)
        rates.append(len(texts) / (time.perf_counter() - started))
    return rates


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    texts = list(islice(cycle(load_pairs("packaged:construction-faq")["answer"]), args.texts))
    with tempfile.TemporaryDirectory(prefix="bench-static-") as scratch:
        cache_dir = args.cache_dir or scratch
        started = time.perf_counter()
        static_model_path(STATIC, cache_dir)
        distillation = time.perf_counter() - started
        static = texts_per_second(load_model(STATIC, "cpu", cache_dir), texts, args.static_batch_size, args.repeats)
    minilm = texts_per_second(load_model(MINILM, "cpu"), texts, args.minilm_batch_size, args.repeats)
    speedup = min(static) / max(minilm)
    machine = platform.processor() or platform.machine()
    print(
        f"\n{machine}, {torch.get_num_threads()} torch threads, {len(texts)} texts, batch sizes "
        f"{args.static_batch_size} (static) and {args.minilm_batch_size} (MiniLM)"
    )
    print("| distillation | static texts/s | MiniLM texts/s | speed-up (worst static / best MiniLM) |")
    print("| --- | --- | --- | --- |")
    print(
        f"| {distillation:.1f} s | {' / '.join(f'{r:,.0f}' for r in static)} "
        f"| {' / '.join(f'{r:,.0f}' for r in minilm)} | {speedup:.0f}x |"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EmbedftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
