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
from typing import TYPE_CHECKING, Any

from embedft import cli, distributed
from embedft.config import RunConfig, load_config, parse_override, save_config
from embedft.errors import ConfigError, OutputError
from embedft.hub import use_offline_mode
from embedft.outputs import RunFiles, RunLock, find_resumable_run, lock_run

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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


# What a resumed run may change: how often it evaluates, saves and logs, where it logs, how batches are loaded, and
# batch_size with gradient accumulation as long as their product (the rows of one optimizer step) stays the same.
RESUME_SAFE_KEYS = (
    "batch_size",
    "training.gradient_accumulation_steps",
    "training.eval_steps",
    "training.save_steps",
    "training.logging_steps",
    "training.save_total_limit",
    "training.report_to",
    "training.dataloader_num_workers",
)
# Says where the run is (RESUME=latest looks there); the run keeps its own.
RESUME_LOCATOR_KEYS = ("output_dir",)
OPTIMISATION_KEYS = ("num_epochs", "learning_rate", "weight_decay", "warmup_ratio", "temperature", "device")


def resume_refusal(key: str) -> str:
    """One line saying why ``key`` cannot change on a resumed run, and what can."""
    section = key.split(".", 1)[0]
    if section == "mining":
        reason = "the run's mined triplets are saved with it"
    elif section == "evaluation":
        reason = "baseline and final must be scored alike, and the baseline is saved with the run"
    elif section == "training" or key in OPTIMISATION_KEYS:
        reason = "the checkpoint's optimizer, learning-rate schedule and loss go on with the values they started with"
    elif "model" in key or "prompt" in key or key == "max_seq_length":
        reason = "the checkpoint holds the model as it was configured"
    else:
        reason = "the run's split, mined triplets and baseline were made with the config it started with"
    return (
        f"'{key}' cannot change on a resumed run: {reason}; start a new run to change it (a resumed run takes only "
        f"{', '.join(RESUME_SAFE_KEYS)}; batch_size times gradient_accumulation_steps unchanged)"
    )


def check_resume_overrides(overrides: Sequence[str]) -> None:
    """Refuse, with the reason, an override that a resumed run cannot take (see ``RESUME_SAFE_KEYS``).

    Raises:
        ConfigError: an override of any other key.
    """
    for override in overrides:
        key, _ = parse_override(override)
        if key not in RESUME_SAFE_KEYS and key not in RESUME_LOCATOR_KEYS:
            raise ConfigError(resume_refusal(key))


def flat_options(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"eval_steps": 5}}`` as ``{"training.eval_steps": 5}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and not prefix:
            flat.update(flat_options(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_global_batch(saved: RunConfig, changed: RunConfig) -> None:
    """A resumed run may split its batches differently, never change how many rows an optimizer step sees: the
    checkpoint's learning-rate schedule and its position in the data count steps of that many rows.

    Raises:
        ConfigError: ``batch_size`` times ``training.gradient_accumulation_steps`` differs from the saved run's.
    """
    before = saved.batch_size * saved.training.accumulation_steps
    after = changed.batch_size * changed.training.accumulation_steps
    if before != after:
        half = max(before // 2, 1)
        example = f"batch_size={half} training.gradient_accumulation_steps={before // half}"
        raise ConfigError(
            f"'batch_size' x 'training.gradient_accumulation_steps' must stay {before} on a resumed run (it was "
            f"{saved.batch_size} x {saved.training.accumulation_steps}), got {changed.batch_size} x "
            f"{changed.training.accumulation_steps} = {after}: e.g. {example}"
        )


def open_resumed_run(
    output_dir: str, resume: str, overrides: Sequence[str] = ()
) -> tuple[RunFiles, RunConfig, RunLock]:
    """The run to resume (a folder, or ``latest``), locked, with its own saved config, changed by the ``key=value``
    ``overrides`` a resumed run can take (:func:`check_resume_overrides`; ``output_dir`` only says where to look).
    A change is written to the run's ``config.yaml`` and logged, so the run's record says what it ran with.

    Raises:
        ConfigError: an override a resumed run cannot take, or one that changes the rows of an optimizer step.
        OutputError: no such unfinished run, or another process holds it.
    """
    check_resume_overrides(overrides)
    run_dir = find_resumable_run(output_dir, resume)
    lock = lock_run(run_dir)
    try:
        run_dir = find_resumable_run(output_dir, str(run_dir))  # it may have finished while we waited
        files = RunFiles(run_dir)
        saved = load_config(files.config)
        changes = [override for override in overrides if parse_override(override)[0] not in RESUME_LOCATOR_KEYS]
        if not changes:
            return files, saved, lock
        config = load_config(files.config, changes)
        check_global_batch(saved, config)
    except BaseException:
        lock.close()
        raise
    before, after = flat_options(saved.to_dict()), flat_options(config.to_dict())
    changed = [f"{key} {before.get(key)} -> {after[key]}" for key in after if before.get(key) != after[key]]
    if changed:
        cli.setup_logging(files.log)
        logger.info("Resuming %s with changed settings (saved in its config.yaml): %s", run_dir, "; ".join(changed))
        save_config(config, files.config)
    return files, config, lock


def open_new_run(config: RunConfig) -> tuple[RunFiles, RunLock]:
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
    (test, and dev when set) from the whole pool. Texts are encoded once, through ``cache``.

    Negatives the data brought are used as ``mining.given_negatives`` says (never a positive of the question or a
    held-out answer), in rows of the same layout as mined ones; evaluation negatives are always mined."""
    from datasets import concatenate_datasets

    from embedft.data import ANSWER, QUERY
    from embedft.mining import (
        given_negatives_training_set,
        load_triplets,
        mine_evaluation_triplets,
        mine_training_set,
        read_given_negatives,
        save_triplets,
    )
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
        logger.info(
            "mining.num_negatives is 0: training on (query, answer) pairs with in-batch negatives only%s",
            " (the data's given negatives are not used)" if data.has_given_negatives else "",
        )
        return MinedTriplets(**mined)
    train = data.splits["train"]
    # Both search the whole training pool (training answers and corpus_file) and write the rows to the run folder.
    pool_and_path = {"extra_documents": data.training_documents, "cache": cache, "path": files.triplets("train")}
    if data.has_given_negatives and config.mining.given_negatives != "ignore":
        given = read_given_negatives(train, data.all_pairs, data.held_out_answers)
        training = given_negatives_training_set(
            train, given, mining_model, config.mining, config.seed, **pool_and_path
        )
    else:
        if data.has_given_negatives:
            logger.info("mining.given_negatives is ignore: mining every training pair, the data's negatives unused")
        training = mine_training_set(
            train, mining_model, config.mining, config.seed, texts=data.corpus, **pool_and_path
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
    baseline: dict[str, float] | None = None,
) -> TrainingResult:
    """Train and save the final model; after a crash, continue from the last checkpoint, and when the final
    model was already saved, only read back what the training reported. ``baseline`` is logged at step 0."""
    from embedft.modelcard import describe_model
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
        baseline=baseline,
    )
    if checkpoint is not None:
        result.resumed_from_step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
    if distributed.is_main_process():  # under torchrun, rank 0 saves; the other ranks stop here
        describe_model(model, config)  # the card names the data set, base model, language and license
        save_model_atomically(model, files.final_model)  # a temporary folder, then renamed: never half-written
    return result


def finish_run(files: RunFiles, metrics: dict[str, Any], similarities: dict[str, Any]) -> None:
    """Write the results people read, move ``latest``, and mark the run complete, in an order that a kill at
    any point leaves resumable: similarities, metrics, report, ``latest``, then ``COMPLETE``."""
    from embedft.outputs import mark_complete, point_latest
    from embedft.report import write_json, write_report

    write_json(files.similarities, similarities)
    write_json(files.metrics, metrics)
    write_report(files.run_dir, metrics, similarities)
    point_latest(files.run_dir)
    mark_complete(files.run_dir)


def finish_scored_run(files: RunFiles) -> dict[str, Any]:
    """Finish a run killed after its ``metrics.json`` was written: report, ``latest`` and the marker."""
    from embedft.report import read_metrics

    logger.info("The run had been scored: writing its report and marking it complete")
    metrics = read_metrics(files.metrics)
    similarities = read_metrics(files.similarities) if files.similarities.is_file() else {}
    finish_run(files, metrics, similarities)
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


def check_same_processes(files: RunFiles) -> None:
    """Refuse to resume a run's checkpoint with another number of training processes: its position in the data,
    learning-rate schedule and random states hold for the number it was saved with.

    Raises:
        ConfigError: the last checkpoint was written by a different number of processes.
    """
    from embedft.training import checkpoint_processes, last_checkpoint

    if files.final_model.is_dir():  # training had finished: nothing of the checkpoint is resumed
        return
    checkpoint = last_checkpoint(files.checkpoints)
    if checkpoint is None:
        return
    saved, now = checkpoint_processes(Path(checkpoint)), distributed.world_size()
    if saved != now:
        raise ConfigError(
            f"run {files.run_dir} was training on {saved} process(es) and is resumed on {now}: resume it with "
            f"NPROC={saved} (the checkpoint's data position, schedule and random states are per process)"
        )


def preview_data(config: RunConfig, rows: int = 3) -> str:
    """What ``--dry-run`` prints: where the pairs come from, the first ``rows`` training pairs as the configured
    columns mapped them, and the sizes of each split after cleaning. Loads no model and writes nothing."""
    from embedft.data import ANSWER, NEGATIVES, QUERY, prepare_data

    use_offline_mode(config.source_names)
    data = prepare_data(config)
    train = data.splits["train"]
    lines = [
        f"Data: {config.dataset_name} (data_format: {config.data_format}, query_column: '{config.query_column}', "
        f"answer_column: '{config.answer_column}'; the log says how FlagEmbedding or Tevatron rows were read)"
    ]
    for index in range(min(rows, len(train))):
        row = train[index]
        lines.append(f"  pair {index + 1}:")
        lines.append(f"    query:  {shorten(row[QUERY])}")
        lines.append(f"    answer: {shorten(row[ANSWER])}")
        if row.get(NEGATIVES):
            lines.append(f"    given negatives: {len(row[NEGATIVES])}, first: {shorten(row[NEGATIVES][0])}")
    lines.append("Sizes: " + ", ".join(f"{key} {value:,}" for key, value in data.counts().items()))
    lines.append("Dry run: nothing was trained or written.")
    return "\n".join(lines)


def shorten(text: str, width: int = 100) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def train_embed(
    config: RunConfig, resume: str | None = None, resume_overrides: Sequence[str] = ()
) -> tuple[Path, dict[str, Any]] | None:
    """The whole job: data, mining, baseline, training, final evaluation and the report.

    Under torchrun (``make train-embed NPROC=N``) every process calls this; rank 0 runs the job and the others only
    train with it (see :mod:`embedft.distributed`).

    Args:
        config: the run configuration (with ``resume``, only its ``output_dir`` is used).
        resume: a run folder or ``latest``: continue that interrupted run with its own saved config.
        resume_overrides: ``key=value`` changes of the resumed run's config, of the keys safe to change
            (:func:`check_resume_overrides`).

    Returns:
        The run folder and its metrics (the contents of ``metrics.json``); None on the ranks other than 0.
    """
    with ExitStack() as stack:
        if not distributed.is_distributed():
            return run_stages(config, resume, stack, resume_overrides=resume_overrides)
        from embedft.models import resolve_device

        group = distributed.start(resolve_device(training_config_device(config, resume)))
        if not distributed.is_main_process():
            train_with_main_process(distributed.receive_run(group))
            return None
        with distributed.main_process_preparation(group) as share:
            return run_stages(config, resume, stack, share, resume_overrides=resume_overrides)


def training_config_device(config: RunConfig, resume: str | None) -> str:
    """The configured device the run will train on: a resumed run keeps its own (``device`` cannot change on
    resume), whatever the command line's config says; it decides the process group's backend (gloo or NCCL)."""
    if resume is None:
        return config.device
    return load_config(RunFiles(find_resumable_run(config.output_dir, resume)).config).device


def training_device(config: RunConfig) -> str:
    """This process's training device: the configured one checked against the machine, and under torchrun the GPU
    of the process's local rank."""
    from embedft.models import resolve_device

    return distributed.process_device(resolve_device(config.device))


def train_with_main_process(shared: distributed.SharedRun) -> None:
    """A rank other than 0: train on the triplets rank 0 mined, with its config and step evaluation set."""
    if shared.outcome == "done":
        return
    from embedft.evaluation import evaluator_for_set
    from embedft.mining import load_triplets
    from embedft.models import load_configured_model

    logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs the run
    config: RunConfig = shared.config
    use_offline_mode(config.source_names)
    files = RunFiles(Path(shared.run_dir))
    device = training_device(config)
    model = load_configured_model(config, config.model_name, device, "model_name")
    step_evaluator = evaluator_for_set(config, shared.step_set, model.get_embedding_dimension())
    train_triplets = load_triplets(files.triplets("train"))
    train_stage(files, model, train_triplets, shared.step_set.triplets, step_evaluator, config, device, shared.resumed)
    distributed.finish()  # rank 0 has saved the final model; it scores and reports alone


def run_stages(
    config: RunConfig,
    resume: str | None,
    stack: ExitStack,
    share: Callable[[distributed.SharedRun], None] | None = None,
    resume_overrides: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """:func:`train_embed`'s stages; ``stack`` holds what must be released when the run ends (the run's lock, a
    temporary embedding cache). Under torchrun, ``share`` hands the other ranks what they train with."""
    started = time.perf_counter()
    if resume is not None:
        files, config, lock = open_resumed_run(config.output_dir, resume, resume_overrides)
        stack.enter_context(lock)
        cli.setup_logging(files.log)
        if files.metrics.is_file():
            if share is not None:
                share(distributed.SharedRun("done"))
            return files.run_dir, finish_scored_run(files)
        check_same_processes(files)
    use_offline_mode(config.source_names)
    if share is not None:  # under torchrun load_config could not check the trainer arguments: rank 0 does it here
        from embedft.training import check_training_arguments

        check_training_arguments(config, training_device(config))

    from embedft.data import prepare_data
    from embedft.embeddings import EmbeddingCache
    from embedft.evaluation import check_matryoshka_dims, evaluate, evaluation_set, evaluator_for_set
    from embedft.modelcard import publish_final_model
    from embedft.models import load_configured_model, resolve_device, warn_if_truncated
    from embedft.provenance import provenance
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
    device = training_device(config)
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
        files,
        model,
        triplets.train,
        step_set.triplets,
        step_evaluator,
        config,
        device,
        resumed=resume is not None,
        baseline=baseline,
    )
    del model
    if distributed.is_distributed():
        distributed.finish()  # the other ranks stop here
        distributed.use_all_cores()  # the final evaluation is rank 0's alone
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
        # Processes that trained together; each took batch_size rows per batch and, with several, scored its
        # queries against every process's answers and negatives. global_batch: rows per optimizer step.
        "world_size": distributed.world_size(),
        "global_batch": config.batch_size * distributed.world_size() * config.training.accumulation_steps,
    }
    if result.precision is not None:
        training["precision"] = result.precision  # mixed precision follows the hardware (README, Precision)
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
        "provenance": provenance(config),  # versions, git commit, hub revisions (embedft.provenance)
    }
    metrics.update(publish_final_model(final_model, files.final_model, config, metrics))  # card scores, hub push
    finish_run(files, metrics, {"baseline": baseline_similarities, "final": final_similarities})
    return files.run_dir, metrics
