#!/usr/bin/env python
"""Fine-tune an embedding model: data -> split -> hard-negative mining -> baseline eval -> MNRL training -> final eval.

Usage:
    python scripts/train_embed.py --config configs/run_embedding_mnrl.yaml [key=value ...]
    python scripts/train_embed.py --resume outputs/<run>|latest     # continue an interrupted run

An interrupted run (crash, SIGKILL, power loss) resumes from its last checkpoint with the same split, the same
mined negatives (cached in the run folder) and the optimizer state, and ends at the same total step count.
"""

from __future__ import annotations

import argparse
import logging
import time

from embedft import cli
from embedft.config import load_config, save_config
from embedft.errors import ConfigError
from embedft.hub import use_offline_mode

logger = logging.getLogger("embedft.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, config_default="configs/run_embedding_mnrl.yaml")
    parser.add_argument(
        "--resume", default=None, metavar="RUN", help="Resume an interrupted run: its folder, or 'latest'."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    resume_dir = None
    if args.resume is not None:
        from embedft.outputs import find_resumable_run, lock_run

        if args.overrides:
            raise ConfigError("a resumed run keeps its own config: drop the key=value overrides (SET) with RESUME")
        resume_dir = find_resumable_run(config.output_dir, args.resume)
        run_lock = lock_run(resume_dir)  # noqa: F841 - held until the process ends
        resume_dir = find_resumable_run(config.output_dir, str(resume_dir))  # it may have finished meanwhile
        config = load_config(resume_dir / "config.yaml")
    use_offline_mode(config.source_names)
    cli.setup_logging()
    started = time.perf_counter()
    timings: dict[str, float] = {}

    from embedft.data import prepare_data
    from embedft.evaluation import check_matryoshka_dims, evaluate, evaluator_for, pair_similarities
    from embedft.mining import load_triplets, mine_evaluation_triplets, mine_training_triplets, save_triplets
    from embedft.models import load_configured_model, resolve_device, warn_if_truncated
    from embedft.outputs import FINAL_MODEL, create_run_dir, lock_run, point_latest
    from embedft.report import format_summary, read_metrics, write_json, write_report
    from embedft.training import (
        evaluation_at_step,
        history_from_checkpoint,
        last_checkpoint,
        save_model_atomically,
        train_model,
    )

    # 1. Data: load, clean, sample, split (seeded, or the data's own split), plus the retrieval pool.
    data = prepare_data(config)
    splits = data.splits
    timings["data_seconds"] = time.perf_counter() - started

    # 2. Models: the one we train, and the mining model on its own device (the CPU by default).
    device = resolve_device(config.device)
    mining_device = resolve_device(config.mining.device, "mining.device", for_training=False)
    model = load_configured_model(config, config.model_name, device, "model_name")
    mining_model = load_configured_model(config, config.mining_model_name, mining_device, "mining_model_name")
    check_matryoshka_dims(config.evaluation.matryoshka_dims, model.get_embedding_dimension())
    warn_if_truncated(model, data.corpus)

    # Nothing is written before the inputs have all been checked.
    if resume_dir is None:
        run_dir = create_run_dir(config.output_dir, config.run_name)
        run_lock = lock_run(run_dir)  # noqa: F841 - held until the process ends
        save_config(config, run_dir / "config.yaml")
        (run_dir / "data").mkdir()
    else:
        run_dir = resume_dir
        (run_dir / "data").mkdir(exist_ok=True)
    cli.setup_logging(run_dir / "train.log")
    logger.info(
        "%s run folder: %s (training on %s, mining on %s)",
        "Resuming" if resume_dir else "New",
        run_dir,
        device,
        mining_device,
    )

    # 3. Hard-negative mining with the mining model; the triplets are kept, so a resumed run reuses them.
    step_started = time.perf_counter()
    train_file, eval_file = run_dir / "data" / "train_triplets.jsonl", run_dir / "data" / "eval_triplets.jsonl"
    if train_file.is_file() and eval_file.is_file():
        logger.info("Reusing the mined triplets in %s", train_file.parent)
        train_triplets, eval_triplets = load_triplets(train_file), load_triplets(eval_file)
    else:
        eval_triplets = mine_evaluation_triplets(
            splits["test"], data.corpus, mining_model, config.mining.batch_size, other_pairs=data.all_pairs
        )
        train_triplets = mine_training_triplets(
            splits["train"], mining_model, config.mining, config.seed, extra_documents=data.extra_documents
        )
        save_triplets(eval_triplets, eval_file)
        save_triplets(train_triplets, train_file)
    del mining_model
    timings["mining_seconds"] = time.perf_counter() - step_started
    logger.info("%d training and %d evaluation triplets", len(train_triplets), len(eval_triplets))

    # 4. Baseline evaluation: triplet accuracy and retrieval over the whole pool.
    evaluator = evaluator_for(config, data, eval_triplets, model.get_embedding_dimension())
    step_started = time.perf_counter()
    baseline_file = run_dir / "data" / "baseline.json"
    if baseline_file.is_file():
        saved = read_metrics(baseline_file)
        baseline, similarities = saved["baseline"], {"baseline": saved["similarities"]}
    else:
        baseline = evaluate(model, evaluator)
        similarities = {
            "baseline": pair_similarities(
                model, eval_triplets, config.evaluation.similarity_sample, config.evaluation.batch_size
            )
        }
        write_json(baseline_file, {"baseline": baseline, "similarities": similarities["baseline"]})
    timings["baseline_eval_seconds"] = time.perf_counter() - step_started
    logger.info("Baseline: %s", baseline)

    # 5. Contrastive training.
    step_started = time.perf_counter()
    tensorboard_dir = str(run_dir / "tensorboard") if "tensorboard" in config.training.report_to else None
    final_dir = run_dir / FINAL_MODEL
    if final_dir.is_dir():  # interrupted after the final model was saved: score it, do not train again
        logger.info("Training had finished: scoring the saved %s", final_dir)
        model = load_configured_model(config, str(final_dir), device, "the saved final model")
        result = history_from_checkpoint(last_checkpoint(run_dir / "checkpoints"))
    else:
        result = train_model(
            model,
            train_triplets,
            eval_triplets,
            evaluator,
            config,
            str(run_dir / "checkpoints"),
            device,
            tensorboard_dir,
            resume_from_checkpoint=last_checkpoint(run_dir / "checkpoints") if resume_dir else None,
        )
    timings["training_seconds"] = time.perf_counter() - step_started

    # 6. Final evaluation and the saved model.
    step_started = time.perf_counter()
    # The trainer already scored its last step (with step-wise evaluation); score only when it did not.
    final = evaluation_at_step(result.history, result.global_step) or evaluate(model, evaluator)
    similarities["final"] = pair_similarities(
        model, eval_triplets, config.evaluation.similarity_sample, config.evaluation.batch_size
    )
    timings["final_eval_seconds"] = time.perf_counter() - step_started
    if not final_dir.is_dir():
        save_model_atomically(model, final_dir)  # a temporary folder, then renamed: never half-written
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
