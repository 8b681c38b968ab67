#!/usr/bin/env python
"""Fine-tune an embedding model: data -> split -> hard-negative mining -> baseline eval -> MNRL training -> final eval.

Usage:
    python scripts/train_embed.py --config configs/run_embedding_mnrl.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import time

from embedft import cli
from embedft.config import load_config, save_config
from embedft.hub import use_offline_mode

logger = logging.getLogger("embedft.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, config_default="configs/run_embedding_mnrl.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    use_offline_mode([config.dataset_name, config.model_name, config.mining_model_name])
    cli.setup_logging()
    started = time.perf_counter()
    timings: dict[str, float] = {}

    from embedft.data import prepare_data
    from embedft.evaluation import build_evaluator, build_retrieval_task, evaluate, pair_similarities
    from embedft.mining import mine_evaluation_triplets, mine_training_triplets
    from embedft.models import load_model, resolve_device
    from embedft.outputs import FINAL_MODEL, create_run_dir, point_latest
    from embedft.report import format_summary, write_json, write_report
    from embedft.training import save_model_atomically, train_model

    # 1. Data: load, clean, sample, split (seeded, or the data's own split), plus the retrieval pool.
    data = prepare_data(config)
    splits = data.splits
    timings["data_seconds"] = time.perf_counter() - started

    # 2. Models: the one we train, and the mining model on its own device (the CPU by default).
    device = resolve_device(config.device)
    model = load_model(
        config.model_name,
        device,
        config.cache_dir,
        config.trust_remote_code,
        config.max_seq_length,
        "model_name",
        config.use_prompts,
    )
    mining_model = load_model(
        config.mining_model_name,
        config.mining.device,
        config.cache_dir,
        config.trust_remote_code,
        config.max_seq_length,
        "mining_model_name",
        config.use_prompts,
    )

    # Nothing is written before the inputs have all been checked.
    run_dir = create_run_dir(config.output_dir, config.run_name)
    cli.setup_logging(run_dir / "train.log")
    save_config(config, run_dir / "config.yaml")
    (run_dir / "data").mkdir()
    logger.info("Run folder: %s (training on %s, mining on %s)", run_dir, device, config.mining.device)

    # 3. Hard-negative mining with the mining model.
    step_started = time.perf_counter()
    eval_triplets = mine_evaluation_triplets(
        splits["test"], data.corpus, mining_model, config.mining.batch_size, other_pairs=data.all_pairs
    )
    train_triplets = mine_training_triplets(
        splits["train"], mining_model, config.mining, config.seed, extra_documents=data.extra_documents
    )
    del mining_model
    train_triplets.to_json(run_dir / "data" / "train_triplets.jsonl", lines=True, force_ascii=False)
    eval_triplets.to_json(run_dir / "data" / "eval_triplets.jsonl", lines=True, force_ascii=False)
    timings["mining_seconds"] = time.perf_counter() - step_started
    logger.info("Mined %d training and %d evaluation triplets", len(train_triplets), len(eval_triplets))

    # 4. Baseline evaluation: triplet accuracy and retrieval over the whole pool.
    retrieval = (
        build_retrieval_task(splits["test"], data.all_pairs, data.corpus)
        if config.evaluation.information_retrieval
        else None
    )
    evaluator = build_evaluator(
        eval_triplets,
        retrieval,
        config.evaluation.batch_size,
        config.evaluation.matryoshka_dims,
        model.get_embedding_dimension(),
    )
    step_started = time.perf_counter()
    baseline = evaluate(model, evaluator)
    similarities = {
        "baseline": pair_similarities(
            model, eval_triplets, config.evaluation.similarity_sample, config.evaluation.batch_size
        )
    }
    timings["baseline_eval_seconds"] = time.perf_counter() - step_started
    logger.info("Baseline: %s", baseline)

    # 5. Contrastive training.
    step_started = time.perf_counter()
    tensorboard_dir = str(run_dir / "tensorboard") if "tensorboard" in config.training.report_to else None
    result = train_model(
        model,
        train_triplets,
        eval_triplets,
        evaluator,
        config,
        str(run_dir / "checkpoints"),
        device,
        tensorboard_dir,
    )
    timings["training_seconds"] = time.perf_counter() - step_started

    # 6. Final evaluation and the saved model.
    step_started = time.perf_counter()
    final = evaluate(model, evaluator)
    similarities["final"] = pair_similarities(
        model, eval_triplets, config.evaluation.similarity_sample, config.evaluation.batch_size
    )
    timings["final_eval_seconds"] = time.perf_counter() - step_started
    save_model_atomically(model, run_dir / FINAL_MODEL)
    timings["total_seconds"] = time.perf_counter() - started

    # 7. Metrics, report and plots.
    metrics = {
        "baseline": baseline,
        "final": final,
        "history": result.history,
        "training": {"global_step": result.global_step, "train_loss": result.train_loss, "device": device},
        "data": {
            "rows_loaded": data.stats.rows_in,
            "empty_dropped": data.stats.empty_dropped,
            "duplicates_dropped": data.stats.duplicates_dropped,
            "train_pairs": len(splits["train"]),
            "eval_pairs": len(splits["test"]),
            "eval_questions": len(set(splits["test"]["query"])),
            "retrieval_pool": len(data.corpus),
            "train_triplets": len(train_triplets),
            "eval_triplets": len(eval_triplets),
        },
        "timings": timings,
    }
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "similarities.json", similarities)
    write_report(run_dir, metrics, similarities)
    point_latest(config.output_dir, run_dir)
    print(format_summary(metrics, run_dir), flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
