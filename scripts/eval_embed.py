#!/usr/bin/env python
"""Evaluate a saved model on the configured evaluation split: triplet accuracy and retrieval metrics.

By default it scores the latest run's final model with that run's own config and evaluation triplets, so the
numbers match the run's metrics.json. MODEL may be a run folder, a model folder (e.g. the untouched base model),
or a packaged or hub name; a model from no run is scored with the latest run's config (the same split), and the
evaluation triplets are mined again from that config's data.

Usage:
    python scripts/eval_embed.py [--model PATH] [--config CONFIG] [--output FILE] [key=value ...]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from embedft import cli
from embedft.errors import OutputError
from embedft.hub import use_offline_mode

logger = logging.getLogger("embedft.eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model or run folder (default: the latest run's final model).")
    parser.add_argument("--output", default=None, help="Also write the metrics to this JSON file (never overwritten).")
    cli.add_config_arguments(parser, config_default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from embedft.outputs import resolve_model_and_config

    cli.setup_logging()
    model_path, run_dir, config = resolve_model_and_config(args.model, args.config, args.overrides)
    use_offline_mode([*config.source_names, model_path])
    if args.output is not None and Path(args.output).exists():
        raise OutputError(f"{args.output} already exists and is never overwritten: choose another --output")
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise OutputError(f"the folder of --output {args.output} does not exist: create it or choose another path")

    from embedft.data import prepare_data
    from embedft.evaluation import evaluate, evaluator_for
    from embedft.mining import load_triplets, mine_evaluation_triplets
    from embedft.models import load_configured_model, resolve_device
    from embedft.outputs import RunFiles
    from embedft.report import read_metrics, write_json

    device = resolve_device(config.device, for_training=False)
    model = load_configured_model(config, model_path, device, "MODEL")
    data = prepare_data(config)
    files = RunFiles(run_dir) if run_dir is not None else None
    if files is not None and files.split.is_file() and read_metrics(files.split) == data.fingerprint:
        logger.info("Using the run's evaluation triplets: %s", files.triplets("test"))
        eval_triplets = load_triplets(files.triplets("test"))
    else:
        mining_device = resolve_device(config.mining.device, "mining.device", for_training=False)
        mining_model = load_configured_model(config, config.mining_model_name, mining_device, "mining_model_name")
        eval_triplets = mine_evaluation_triplets(
            data.splits["test"], data.corpus, mining_model, config.mining.batch_size, other_pairs=data.all_pairs
        )
    evaluator = evaluator_for(config, data, eval_triplets, model.get_embedding_dimension())
    metrics = evaluate(model, evaluator)
    result = {"model": model_path, "eval_triplets": len(eval_triplets), "metrics": metrics}
    if args.output is not None:
        write_json(Path(args.output), result)
    print(f"\nModel: {model_path}")
    for name, value in metrics.items():
        print(f"  {name:<18} {value:.4f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
