"""The training job, stage by stage: data -> mining -> baseline -> training -> final -> report.

Each stage takes plain inputs and returns plain outputs. This module runs them in order and decides where their
results go (through :class:`~embedft.outputs.RunFiles`), so an interrupted run resumes from what was finished: the
mined triplets, the baseline scores, the last checkpoint, the final model, and a run that got as far as its
``metrics.json`` is only finished off.

Baseline and final are measured under identical conditions: the base model before the trainer touches it, and the
saved final model reloaded from disk, both in fp32 on the same device with the same evaluator. So ``make
eval-embed`` on the saved model reproduces ``final`` exactly, and on a GPU neither number comes from inside the
trainer's mixed-precision autocast.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embedft import cli, distributed
from embedft.config import RunConfig, load_config, save_config
from embedft.errors import OutputError
from embedft.hub import use_offline_mode
from embedft.outputs import RunFiles, find_resumable_run, lock_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

    from embedft.data import PreparedData
    from embedft.embeddings import EmbeddingCache
    from embedft.training import TrainingResult

logger = logging.getLogger(__name__)


@dataclass
class MinedTriplets:
    """The mining stage's output: training triplets, and evaluation triplets of the test (and dev) questions."""

    train: Dataset
    test: Dataset
    dev: Dataset | None = None


def open_resumed_run(output_dir: str, resume: str) -> tuple[RunFiles, RunConfig, IO[str]]:
    """The run to resume (a folder, or ``latest``), locked, with its own saved config.

    Raises:
        OutputError: no such unfinished run, or another process holds it.
    """
    run_dir = find_resumable_run(output_dir, resume)
    lock = lock_run(run_dir)
    run_dir = find_resumable_run(output_dir, str(run_dir))  # it may have finished while we waited
    return RunFiles(run_dir), load_config(run_dir / "config.yaml"), lock


def open_new_run(config: RunConfig) -> tuple[RunFiles, IO[str]]:
    """Create, lock and describe a new run folder: the resolved config and an empty ``data/``."""
    from embedft.outputs import create_run_dir

    files = RunFiles(create_run_dir(config.output_dir, config.run_name))
    lock = lock_run(files.run_dir)
    save_config(config, files.config)
    files.data_dir.mkdir()
    return files, lock


def embedding_cache(config: RunConfig, stack: ExitStack) -> EmbeddingCache:
    """The run's embedding cache: the shared one under ``cache_dir``, or with ``embedding_cache: false`` a temporary
    folder removed when ``stack`` closes (the stages of one run still share it)."""
    import tempfile

    from embedft.embeddings import EmbeddingCache, embedding_cache_root

    if config.embedding_cache:
        return EmbeddingCache(embedding_cache_root(config.cache_dir))
    return EmbeddingCache(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedft-embeddings-")))


def mine_stage(
    files: RunFiles,
    data: PreparedData,
    mining_model: SentenceTransformer,
    config: RunConfig,
    cache: EmbeddingCache,
) -> MinedTriplets:
    """Mine (or reuse the run's) triplets: training negatives from the training pool only, evaluation negatives
    (test, and dev when set) from the whole pool. Texts are encoded once, through ``cache``."""
    from datasets import concatenate_datasets

    from embedft.data import ANSWER, QUERY
    from embedft.mining import load_triplets, mine_evaluation_triplets, mine_training_set, save_triplets
    from embedft.report import read_metrics, write_json

    splits = [name for name in ("train", "test", "dev") if name in data.splits]
    if files.split.is_file() or files.triplets("train").is_file():
        if not files.split.is_file() or read_metrics(files.split) != data.fingerprint:
            raise OutputError(
                f"run {files.run_dir} was made with another split than its config gives now (changed data, or an "
                "older embedft): its cached triplets and baseline do not apply; start a new run"
            )
        if all(files.triplets(name).is_file() for name in splits):
            logger.info("Reusing the mined triplets in %s", files.data_dir)
            if not files.mining.is_file() and config.mining.num_negatives > 0:  # stopped before the diagnostics
                logger.warning("%s is missing: this run's mining diagnostics were not recorded", files.mining)
            return MinedTriplets(**{name: load_triplets(files.triplets(name)) for name in splits})
    write_json(files.split, data.fingerprint)
    # Test and dev questions in one call, so the whole pool is encoded once for both.
    held_out = [name for name in splits if name != "train"]
    together = mine_evaluation_triplets(
        concatenate_datasets([data.splits[name].select_columns([QUERY, ANSWER]) for name in held_out]),
        data.corpus,
        mining_model,
        config.mining.batch_size,
        other_pairs=data.all_pairs,
        cache=cache,
        exact_search_limit=config.mining.exact_search_limit,
    )
    mined = {}
    for name in held_out:
        questions = set(data.splits[name][QUERY])
        mined[name] = together.select([i for i, query in enumerate(together[QUERY]) if query in questions])
    for name, triplets in mined.items():
        save_triplets(triplets, files.triplets(name))
    if config.mining.num_negatives == 0:
        # In-batch negatives only: the loss takes the other answers of each batch; nothing to mine for training.
        mined["train"] = data.splits["train"].select_columns([QUERY, ANSWER])
        save_triplets(mined["train"], files.triplets("train"))
        logger.info("mining.num_negatives is 0: training on (query, answer) pairs with in-batch negatives only")
        return MinedTriplets(**mined)
    training = mine_training_set(
        data.splits["train"],
        mining_model,
        config.mining,
        config.seed,
        extra_documents=data.training_documents,
        cache=cache,
        path=files.triplets("train"),
        texts=data.corpus,
    )
    mined["train"] = training.triplets
    if files.mining.is_file():  # only when the cached triplets were removed by hand: say what is replaced
        logger.warning("Replacing %s with the diagnostics of the triplets mined now", files.mining)
    write_json(files.mining, training.diagnostics.to_dict())
    return MinedTriplets(**mined)


def score(
    model: SentenceTransformer,
    evaluator: BaseEvaluator,
    triplets: Dataset,
    config: RunConfig,
    cache: EmbeddingCache | None = None,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The evaluator's metrics, and the query-positive/negative similarities the report histograms (their answers
    read from ``cache``, where the evaluation has just put the pool)."""
    from embedft.evaluation import evaluate, pair_similarities

    metrics = evaluate(model, evaluator)
    similarities = pair_similarities(
        model, triplets, config.evaluation.similarity_sample, config.evaluation.batch_size, cache
    )
    return metrics, similarities


def baseline_stage(
    files: RunFiles,
    model: SentenceTransformer,
    evaluator: BaseEvaluator,
    triplets: Dataset,
    config: RunConfig,
    cache: EmbeddingCache | None = None,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Score the untouched model on the test questions (or reuse the run's saved baseline)."""
    from embedft.report import read_metrics, write_json

    if files.baseline.is_file():
        saved = read_metrics(files.baseline)
        return saved["baseline"], saved["similarities"]
    baseline, similarities = score(model, evaluator, triplets, config, cache)
    write_json(files.baseline, {"baseline": baseline, "similarities": similarities})
    return baseline, similarities


def train_stage(
    files: RunFiles,
    model: SentenceTransformer,
    train_triplets: Dataset,
    step_triplets: Dataset,
    evaluator: BaseEvaluator,
    config: RunConfig,
    device: str,
    resumed: bool,
) -> TrainingResult:
    """Train and save the final model; after a crash, continue from the last checkpoint, and when the final
    model was already saved, only read back what the training reported."""
    from embedft.training import (
        history_from_checkpoint,
        last_checkpoint,
        load_guide,
        save_model_atomically,
        train_model,
    )

    if files.final_model.is_dir():
        logger.info("Training had finished: using the saved %s", files.final_model)
        return history_from_checkpoint(last_checkpoint(files.checkpoints))
    checkpoint = last_checkpoint(files.checkpoints) if resumed else None
    # The gist losses' frozen guide (the mining model was released after mining: loaded again, on this device).
    guide = load_guide(config, device)
    result = train_model(
        model,
        train_triplets,
        step_triplets,  # the evaluation loss: the same questions as the step evaluator
        evaluator,
        config,
        str(files.checkpoints),
        device,
        str(files.tensorboard) if "tensorboard" in config.training.report_to else None,
        resume_from_checkpoint=checkpoint,
        guide=guide,
    )
    if checkpoint is not None:
        result.resumed_from_step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
    if distributed.is_main_process():  # under torchrun, rank 0 saves; the other ranks stop here
        save_model_atomically(model, files.final_model)  # a temporary folder, then renamed: never half-written
    return result


def finish_run(files: RunFiles, output_dir: str, metrics: dict[str, Any], similarities: dict[str, Any]) -> None:
    """Write the results people read, move ``latest``, and mark the run complete, in an order that a kill at
    any point leaves resumable: similarities, metrics, report, ``latest``, then ``COMPLETE``."""
    from embedft.outputs import mark_complete, point_latest
    from embedft.report import write_json, write_report

    write_json(files.similarities, similarities)
    write_json(files.metrics, metrics)
    write_report(files.run_dir, metrics, similarities)
    point_latest(output_dir, files.run_dir)
    mark_complete(files.run_dir)


def finish_scored_run(files: RunFiles, output_dir: str) -> dict[str, Any]:
    """Finish a run killed after its ``metrics.json`` was written: report, ``latest`` and the marker."""
    from embedft.report import read_metrics

    logger.info("The run had been scored: writing its report and marking it complete")
    metrics = read_metrics(files.metrics)
    similarities = read_metrics(files.similarities) if files.similarities.is_file() else {}
    finish_run(files, output_dir, metrics, similarities)
    return metrics


def evaluation_protocol(final: dict[str, Any], during_training: dict[str, Any]) -> dict[str, Any]:
    """Which questions and how many documents each number in ``metrics.json`` was measured on, so nobody compares
    a step value (``history``, often a bounded pool) with ``baseline`` or ``final`` (the whole pool) by mistake.

    Args:
        final: the baseline and final evaluation's record, from :meth:`~embedft.evaluation.EvaluationSet.record`.
        during_training: the step evaluation's record.
    """
    return {
        "baseline_and_final": final,
        "during_training": during_training,
        "final_model": "reloaded from final/ in fp32, like the baseline",
    }


def train_embed(config: RunConfig, resume: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The whole job: data, mining, baseline, training, final evaluation and the report.

    Under torchrun (``make train-embed NPROC=N``) every process calls this; rank 0 runs the job and the others only
    train with it (see :mod:`embedft.distributed`).

    Args:
        config: the run configuration (with ``resume``, only its ``output_dir`` is used).
        resume: a run folder or ``latest``: continue that interrupted run with its own saved config.

    Returns:
        The run folder and its metrics (the contents of ``metrics.json``); None on the ranks other than 0.
    """
    with ExitStack() as stack:
        if not distributed.is_distributed():
            return run_stages(config, resume, stack)
        from embedft.models import resolve_device

        group = distributed.start(resolve_device(config.device))
        if not distributed.is_main_process():
            train_with_main_process(distributed.receive_run(group))
            return None
        with distributed.main_process_preparation(group) as share:
            return run_stages(config, resume, stack, share)


def train_with_main_process(shared: distributed.SharedRun) -> None:
    """A rank other than 0: train on the triplets rank 0 mined, with its config and step evaluation set."""
    if shared.outcome == "done":
        return
    from embedft.evaluation import evaluator_for_set
    from embedft.mining import load_triplets
    from embedft.models import load_configured_model, resolve_device

    logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs the run
    config: RunConfig = shared.config
    use_offline_mode(config.source_names)
    files = RunFiles(Path(shared.run_dir))
    device = distributed.process_device(resolve_device(config.device))
    model = load_configured_model(config, config.model_name, device, "model_name")
    step_evaluator = evaluator_for_set(config, shared.step_set, model.get_embedding_dimension())
    train_triplets = load_triplets(files.triplets("train"))
    train_stage(files, model, train_triplets, shared.step_set.triplets, step_evaluator, config, device, shared.resumed)


def run_stages(
    config: RunConfig,
    resume: str | None,
    stack: ExitStack,
    share: Callable[[distributed.SharedRun], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """:func:`train_embed`'s stages; ``stack`` holds what must be released when the run ends (the run's lock, a
    temporary embedding cache). Under torchrun, ``share`` hands the other ranks what they train with."""
    started = time.perf_counter()
    if resume is not None:
        files, config, lock = open_resumed_run(config.output_dir, resume)
        stack.enter_context(lock)
        cli.setup_logging(files.log)
        if files.metrics.is_file():
            if share is not None:
                share(distributed.SharedRun("done"))
            return files.run_dir, finish_scored_run(files, config.output_dir)
    use_offline_mode(config.source_names)

    from embedft.data import prepare_data
    from embedft.embeddings import EmbeddingCache
    from embedft.evaluation import check_matryoshka_dims, evaluate, evaluation_set, evaluator_for_set
    from embedft.models import load_configured_model, resolve_device, warn_if_truncated
    from embedft.training import matryoshka_training_dims, peak_rss_gib

    timings: dict[str, float] = {}
    peak_memory: dict[str, float] = {}  # the process's peak resident memory (GiB) at the end of each stage
    data = prepare_data(config)
    if "dev" in data.splits and config.training.eval_steps is None:
        logger.warning(
            "dev_size is set but training.eval_steps is null: the dev questions are held out and not scored"
        )
    timings["data_seconds"] = time.perf_counter() - started
    peak_memory["data"] = peak_rss_gib()

    stage_started = time.perf_counter()
    device = distributed.process_device(resolve_device(config.device))
    mining_device = resolve_device(config.mining.device, "mining.device", for_training=False)
    model = load_configured_model(config, config.model_name, device, "model_name")
    mining_model = load_configured_model(config, config.mining_model_name, mining_device, "mining_model_name")
    dimension = model.get_embedding_dimension()
    check_matryoshka_dims(config.evaluation.matryoshka_dims, dimension)
    matryoshka_training_dims(config.training.matryoshka_dims, dimension)  # refused before any run folder exists
    warn_if_truncated(model, data.corpus)
    timings["models_seconds"] = time.perf_counter() - stage_started
    peak_memory["models"] = peak_rss_gib()

    # Nothing is written before the inputs have all been checked.
    if resume is None:
        files, lock = open_new_run(config)
        stack.enter_context(lock)
        cli.setup_logging(files.log)
    files.data_dir.mkdir(exist_ok=True)
    logger.info(
        "%s run folder: %s (training on %s, mining on %s)",
        "Resuming" if resume else "New",
        files.run_dir,
        device,
        mining_device,
    )

    stage_started = time.perf_counter()
    cache = embedding_cache(config, stack)
    triplets = mine_stage(files, data, mining_model, config, cache)
    del mining_model
    timings["mining_seconds"] = time.perf_counter() - stage_started
    peak_memory["mining"] = peak_rss_gib()
    # One negative: (query, answer, negative) triplets; more: (query, answer, negative_1..negative_k) rows.
    negatives_per_row = len(triplets.train.column_names) - 2
    if negatives_per_row > 1:
        logger.info(
            "%d training rows of %d negatives and %d evaluation triplets",
            len(triplets.train),
            negatives_per_row,
            len(triplets.test),
        )
    else:
        logger.info("%d training and %d evaluation triplets", len(triplets.train), len(triplets.test))

    stage_started = time.perf_counter()
    # Baseline and final: every test question against the whole pool (or bounded, with evaluation.final_pool).
    # The baseline reads the pool's embeddings from the cache (mining wrote them when the miner is the base model).
    test_set = evaluation_set(config, data, triplets.test, "test")
    baseline_evaluator = evaluator_for_set(config, test_set, dimension, cache)
    baseline, baseline_similarities = baseline_stage(
        files, model, baseline_evaluator, test_set.triplets, config, cache
    )
    timings["baseline_eval_seconds"] = time.perf_counter() - stage_started
    peak_memory["baseline_eval"] = peak_rss_gib()
    logger.info("Baseline: %s", baseline)

    stage_started = time.perf_counter()
    # Scores during training: the dev questions (else the test ones), at most evaluation.max_queries of them,
    # ranking the pool bounded by evaluation.max_pool; their keys start with ir_steps, not ir.
    step_split, step_triplets = ("dev", triplets.dev) if triplets.dev is not None else ("test", triplets.test)
    step_set = evaluation_set(config, data, step_triplets, step_split, during_training=True)
    step_evaluator = evaluator_for_set(config, step_set, dimension)
    if share is not None:
        outcome = "done" if files.final_model.is_dir() else "train"
        share(distributed.SharedRun(outcome, str(files.run_dir), config, resume is not None, step_set))
    result = train_stage(
        files, model, triplets.train, step_set.triplets, step_evaluator, config, device, resumed=resume is not None
    )
    del model
    if distributed.is_distributed():
        distributed.use_all_cores()  # the other ranks have stopped: the final evaluation is rank 0's alone
    timings["training_seconds"] = time.perf_counter() - stage_started
    peak_memory["training"] = peak_rss_gib()
    if result.first_step_at is not None:
        timings["seconds_to_first_step"] = result.first_step_at - started
        timings["peak_rss_gib_at_first_step"] = result.first_step_rss_gib

    stage_started = time.perf_counter()
    final_model = load_configured_model(config, str(files.final_model), device, "the saved final model")
    # The final model's pool embeddings stay in the run folder: make infer-embed reads them instead of encoding.
    final_cache = EmbeddingCache(files.embeddings)
    final_evaluator = evaluator_for_set(config, test_set, dimension, final_cache)
    final, final_similarities = score(final_model, final_evaluator, test_set.triplets, config, final_cache)
    # The dev questions, scored as during training: what a choice between recipes is made on (bench-ablation).
    final_dev = evaluate(final_model, step_evaluator) if step_split == "dev" else None
    timings["final_eval_seconds"] = time.perf_counter() - stage_started
    peak_memory["final_eval"] = peak_rss_gib()
    timings["total_seconds"] = time.perf_counter() - started

    training = {
        "global_step": result.global_step,
        "train_loss": result.train_loss,
        "device": device,
        "loss": config.training.loss,
        # Processes that trained together; each took batch_size rows per step and, with several, scored its queries
        # against every process's answers and negatives (global_batch rows).
        "world_size": distributed.world_size(),
        "global_batch": config.batch_size * distributed.world_size(),
    }
    if result.resumed_from_step is not None:
        training["resumed_from_step"] = result.resumed_from_step
    metrics = {
        "baseline": baseline,
        "final": final,
        **({"final_dev": final_dev} if final_dev is not None else {}),
        "history": result.history,
        "evaluation": evaluation_protocol(test_set.record(), step_set.record()),
        "training": training,
        "data": {
            **data.counts(),
            "train_triplets": len(triplets.train),  # training rows: triplets, or n-tuples with more negatives
            **({"train_negatives_per_row": negatives_per_row} if negatives_per_row > 1 else {}),
            "eval_triplets": len(triplets.test),
            **({"dev_triplets": len(triplets.dev)} if triplets.dev is not None else {}),
        },
        "timings": timings,
        "peak_memory_gib": {stage: round(value, 2) for stage, value in peak_memory.items()},
    }
    finish_run(files, config.output_dir, metrics, {"baseline": baseline_similarities, "final": final_similarities})
    return files.run_dir, metrics
