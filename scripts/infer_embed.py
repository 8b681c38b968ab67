#!/usr/bin/env python
"""Retrieve the top-k answers for query texts with a saved model.

Texts come from arguments, a file (--file, one per line) or standard input. The corpus is the run's retrieval
pool (every answer of the configured data, plus its corpus_file), or --corpus: a .jsonl with a 'text' per row or a
text file with one document per line. The model defaults to the latest run's final model, loaded with the run's
max_seq_length and query/document prompts. A run's final model reads the pool's embeddings that its final evaluation
kept in the run folder (embeddings/), so a call encodes only the query; other documents are encoded once and added.

Usage:
    python scripts/infer_embed.py "how long does a building permit take?" [--top-k 5] [--model PATH]
    echo "question" | python scripts/infer_embed.py
"""

from __future__ import annotations

import argparse
import json
import sys

from embedft import cli
from embedft.errors import DataError
from embedft.hub import use_offline_mode


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="Query texts.")
    parser.add_argument("--file", default=None, help="File with one query per line.")
    parser.add_argument("--model", default=None, help="Model or run folder (default: the latest run's final model).")
    parser.add_argument(
        "--corpus", default=None, help=".jsonl with 'text' rows, or a text file with one document per line."
    )
    parser.add_argument("--top-k", type=int, default=5, help="Answers shown per query (default: %(default)s).")
    parser.add_argument("--json", action="store_true", help="Print JSON lines instead of a readable list.")
    parser.add_argument("--config", default=None, help="Config whose data set gives the corpus (default: the run's).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="key=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from embedft.inference import read_texts
    from embedft.outputs import resolve_model_and_config

    stdin_text = None if sys.stdin is None or sys.stdin.isatty() or args.texts or args.file else sys.stdin.read()
    queries = read_texts(args.texts, args.file, stdin_text)
    if not queries:
        raise DataError('no query texts: pass them as arguments, TEXT="...", FILE=path, or on standard input')
    if args.top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {args.top_k}")
    cli.setup_logging()
    model_path, run_dir, config = resolve_model_and_config(args.model, args.config, args.overrides)
    use_offline_mode([*config.source_names, model_path])

    from embedft.data import load_corpus_file, retrieval_pool
    from embedft.inference import corpus_cache, search
    from embedft.models import load_configured_model, resolve_device

    if args.corpus is None:
        corpus = retrieval_pool(config)
    elif args.corpus.lower().endswith(".jsonl"):
        corpus = load_corpus_file(args.corpus, key="--corpus")
    else:
        corpus = read_texts([], args.corpus, None)
        if not corpus:
            raise DataError(f"the corpus {args.corpus} is empty: give a file with one document per line")
    model = load_configured_model(config, model_path, resolve_device(config.device, for_training=False), "MODEL")
    cache = corpus_cache(run_dir, config)
    results = search(model, queries, corpus, top_k=args.top_k, batch_size=config.evaluation.batch_size, cache=cache)
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [{"score": h.score, "text": h.text} for h in hits]}))
            continue
        print(f"\nQuery: {query}")
        for rank, hit in enumerate(hits, start=1):
            text = " ".join(hit.text.split())
            print(f"  {rank}. {hit.score:.4f}  {text[:200]}{'...' if len(text) > 200 else ''}")
    return 0


if __name__ == "__main__":
    cli.run(main)
