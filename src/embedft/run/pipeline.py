"""The training job, stage by stage: data -> mining -> baseline -> training -> final -> report.

Each stage takes plain inputs and returns plain outputs. This module runs them in order and decides where their
results go (through :class:`~embedft.run.files.RunFiles`), so an interrupted run resumes from what was finished: the
mined triplets, the baseline scores, the last checkpoint, the final model, and a run that got as far as its
``metrics.json`` is only finished off.

Baseline and final are measured under identical conditions: the base model before the trainer touches it, and the
saved final model reloaded from disk, both in fp32 on the same device with the same evaluator. So ``make
eval-embed`` on the saved model reproduces ``final`` exactly, and on a GPU neither number comes from inside the
trainer's mixed-precision autocast.

Importing this module imports torch, transformers and sentence-transformers. The Hugging Face libraries read
``HF_HUB_OFFLINE`` once, when they are imported: a caller that needs no hub switches them offline first
(:func:`embedft.hub.use_offline_mode`), as the command line does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.config.schema import RunConfig
from embedft.config.validation import check_matryoshka_dims
from embedft.data.prepared import PreparedData, prepare_data
from embedft.errors import ConfigError, RunInterrupted
from embedft.evaluation.changes import question_changes
from embedft.evaluation.headroom import ceiling_warning, few_answers_warning
from embedft.evaluation.sets import EvaluationSet, evaluation_set, evaluator_for_set
from embedft.io import write_json
from embedft.logs import peak_rss_gib, setup_logging
from embedft.mining.rows import load_triplets
from embedft.models.devices import encoding, resolve_device
from embedft.models.embedding_cache import EmbeddingCache, configured_cache
from embedft.models.loading import load_configured_model, warn_if_truncated
from embedft.run.files import RunFiles
from embedft.run.modelcard import publish_final_model
from embedft.run.provenance import provenance
from embedft.run.resume import check_same_processes, open_new_run, open_resumed_run, training_config_device
from embedft.run.rounds import earlier_rounds, per_round
from embedft.run.stages import (
    FinalScores,
    MinedTriplets,
    Scores,
    baseline_stage,
    final_stage,
    finish_run,
    finish_scored_run,
    mine_stage,
    train_stage,
    training_data,
)
from embedft.training import distributed
from embedft.training.arguments import check_training_arguments
from embedft.training.checkpoints import last_checkpoint
from embedft.training.history import TrainingResult

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer


logger = logging.getLogger(__name__)


def evaluation_protocol(final: dict[str, Any], during_training: dict[str, Any]) -> dict[str, Any]:
    """Which questions and how many documents each number in ``metrics.json`` was measured on, so nobody compares
    a step value (``history``, often a bounded pool) with ``baseline`` or ``final`` (the whole pool) by mistake.

    Args:
        final: the baseline and final evaluation's record, from :meth:`~embedft.evaluation.sets.EvaluationSet.record`.
        during_training: the step evaluation's record.
    """
    return {
        "baseline_and_final": final,
        "during_training": during_training,
        "final_model": "reloaded from final/ and scored like the baseline (in evaluation.precision)",
    }


def train_embed(
    config: RunConfig, resume: str | None = None, resume_overrides: Sequence[str] = ()
) -> tuple[Path, dict[str, Any]] | None:
    """The whole job: data, mining, baseline, training, final evaluation and the report.

    Under torchrun (``make train-embed NPROC=N``) every process calls this; rank 0 runs the job and the others only
    train with it (see :mod:`embedft.training.distributed`).

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

        group = distributed.start(resolve_device(training_config_device(config, resume)))
        if not distributed.is_main_process():
            train_with_main_process(distributed.receive_run(group))
            return None
        with distributed.main_process_preparation(group) as share:
            return run_stages(config, resume, stack, share, resume_overrides=resume_overrides)


def training_device(config: RunConfig) -> str:
    """This process's training device: the configured one checked against the machine, and under torchrun the GPU
    of the process's local rank."""
    return distributed.process_device(resolve_device(config.device))


def train_with_main_process(shared: distributed.SharedRun) -> None:
    """A rank other than 0: train on the triplets rank 0 mined, with its config and step evaluation set."""
    if shared.outcome == "done":
        return

    logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs the run
    config: RunConfig = shared.config
    files = RunFiles(Path(shared.run_dir))
    device = training_device(config)
    model = load_configured_model(config, config.model_name, device, "model_name")
    step_evaluator = evaluator_for_set(config, shared.step_set, model.get_embedding_dimension())
    pairs = load_triplets(files.unmined_pairs) if files.unmined_pairs.is_file() else None
    train_rows = training_data(load_triplets(files.triplets("train")), pairs)
    train_stage(
        files,
        model,
        train_rows,
        shared.step_set.triplets,
        step_evaluator,
        config,
        device,
        shared.resumed,
        scores_dev=shared.step_set.split == "dev",
    )
    distributed.finish()  # rank 0 has saved the final model; it scores and reports alone


class StageClock:
    """The seconds and the process's peak resident memory (GiB) at the end of each stage of a run, in the order
    the stages ran; ``metrics.json`` records both."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.peak_memory: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as the stage ``name`` (``<name>_seconds`` in the timings)."""
        started = time.perf_counter()
        yield
        self.timings[f"{name}_seconds"] = time.perf_counter() - started
        self.peak_memory[name] = peak_rss_gib()

    def first_step(self, result: TrainingResult) -> None:
        """When the first optimizer step ended, counted from the start of the run, and the memory until then."""
        if result.first_step_at is not None:
            self.timings["seconds_to_first_step"] = result.first_step_at - self.started
            self.timings["peak_rss_gib_at_first_step"] = result.first_step_rss_gib

    def total(self) -> dict[str, float]:
        return {**self.timings, "total_seconds": time.perf_counter() - self.started}


def run_stages(
    config: RunConfig,
    resume: str | None,
    stack: ExitStack,
    share: Callable[[distributed.SharedRun], None] | None = None,
    resume_overrides: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """:func:`train_embed`'s stages; ``stack`` holds what must be released when the run ends (the run's lock, a
    temporary embedding cache). Under torchrun, ``share`` hands the other ranks what they train with."""
    clock = StageClock()
    if resume is not None:
        files, config, lock = open_resumed_run(config.output_dir, resume, resume_overrides)
        stack.enter_context(lock)
        setup_logging(files.log)
        if files.metrics.is_file():
            if share is not None:
                share(distributed.SharedRun("done"))
            return files.run_dir, finish_scored_run(files)
        check_same_processes(files)
    if share is not None:  # under torchrun load_config could not check the trainer arguments: rank 0 does it here
        check_training_arguments(config, training_device(config))
        if config.mining.rounds > 1:
            raise ConfigError("mining.rounds above 1 trains in one process: drop NPROC/NNODES or set mining.rounds 1")
    with clock.stage("data"):
        data = prepare_data(config)
        counts = data.counts()
        warn_if(few_answers_warning(counts["eval_answers"], counts["eval_questions"]))
    with clock.stage("models"):
        device, model, mining_model = load_models(config, data)
    if resume is None:  # nothing is written before the inputs have all been checked
        files, lock = open_new_run(config)
        stack.enter_context(lock)
        setup_logging(files.log)
    files.data_dir.mkdir(exist_ok=True)
    stack.push(note_interruption(files))  # Ctrl-C from here on: one line with the resume command
    logger.info("%s run folder: %s (training on %s)", "Resuming" if resume else "New", files.run_dir, device)
    cache = stack.enter_context(configured_cache(config.embedding_cache, config.cache_dir))
    with clock.stage("mining"), encoding(config.mining.precision, mining_model):
        triplets = mine_stage(files, data, mining_model, config, cache)
        del mining_model
    log_triplets(triplets)
    with clock.stage("baseline_eval"), encoding(config.evaluation.precision, model) as precision:
        # Every test question against the whole pool (or bounded, with evaluation.final_pool), its pool embeddings
        # read from the cache (mining wrote them when the miner is the base model).
        test_set = evaluation_set(config, data, triplets.test, "test")
        baseline_evaluator = evaluator_for_set(config, test_set, model.get_embedding_dimension(), cache)
        baseline = baseline_stage(files, model, baseline_evaluator, test_set.triplets, config, cache)
    logger.info("Baseline: %s", baseline.metrics)
    warn_if(ceiling_warning(baseline.metrics["ndcg@10"]) if "ndcg@10" in baseline.metrics else None)
    with clock.stage("training"):
        step_set = step_evaluation_set(config, data, triplets)
        step_evaluator = evaluator_for_set(config, step_set, model.get_embedding_dimension())
        if share is not None:
            outcome = "done" if files.final_model.is_dir() else "train"
            share(distributed.SharedRun(outcome, str(files.run_dir), config, resume is not None, step_set))
        result, triplets, rounds = train_in_rounds(
            files, data, model, triplets, step_set, step_evaluator, config, device, cache, resume is not None, baseline
        )
        del model
        if distributed.is_distributed():
            distributed.finish()  # the other ranks stop here
            distributed.use_all_cores()  # the final evaluation is rank 0's alone
    clock.first_step(result)
    with clock.stage("final_eval"):
        final = final_stage(files, config, device, test_set, step_set, step_evaluator)
    changes = (
        question_changes(test_set.retrieval, baseline.rankings, final.test.rankings) if test_set.retrieval else None
    )
    if changes is not None:
        write_json(files.questions, changes)
    metrics = assemble_metrics(config, data, triplets, baseline, final, result, device, test_set, step_set, clock)
    metrics |= ({"rounds": rounds} if rounds else {}) | ({"questions": question_counts(changes)} if changes else {})
    metrics["evaluation"]["precision"] = precision  # baseline, final and the merge's dev scores alike
    metrics.update(publish_final_model(final.model, files.final_model, config, metrics))  # card scores, hub push
    finish_run(files, metrics, {"baseline": baseline.similarities, "final": final.test.similarities})
    return files.run_dir, metrics


def train_in_rounds(
    files: RunFiles,
    data: PreparedData,
    model: SentenceTransformer,
    triplets: MinedTriplets,
    step_set: EvaluationSet,
    step_evaluator: BaseEvaluator,
    config: RunConfig,
    device: str,
    cache: EmbeddingCache,
    resumed: bool,
    baseline: Scores,
) -> tuple[TrainingResult, MinedTriplets, list[dict[str, Any]]]:
    """The training stage: with ``mining.rounds`` above 1 the earlier rounds first, each mining again with its model
    (:mod:`embedft.run.rounds`), then the (last) round that chooses the checkpoint, merges and saves the final model.

    Returns:
        The last round's training result, the rows it trained on, and the earlier rounds' records.
    """
    rounds: list[dict[str, Any]] = []
    if config.mining.rounds > 1:
        model, triplets, rounds = earlier_rounds(
            files, data, model, triplets, step_set.triplets, step_evaluator, config, device, cache
        )
    result = train_stage(
        files,
        model,
        triplets.training_data(),
        step_set.triplets,
        step_evaluator,
        per_round(config),
        device,
        resumed,
        baseline.metrics,
        scores_dev=step_set.split == "dev",
    )
    return result, triplets, rounds


def question_counts(changes: dict[str, Any]) -> dict[str, int]:
    """The counts of :func:`~embedft.evaluation.changes.question_changes` for ``metrics.json`` ``questions`` (the
    questions themselves are in ``questions.json``)."""
    return {key: changes[key] for key in ("questions", "improved", "unchanged", "worse")}


def warn_if(warning: str | None) -> None:
    """Log ``warning`` when there is one."""
    if warning is not None:
        logger.warning("%s", warning)


def note_interruption(files: RunFiles) -> Callable[..., bool]:
    """An exit callback for the run's ExitStack: a Ctrl-C (KeyboardInterrupt) becomes :class:`RunInterrupted`,
    whose one line names the run folder, its last complete checkpoint and the command that resumes it; the line also
    goes to the run's ``train.log``."""

    def on_exit(exc_type: type[BaseException] | None, exc: BaseException | None, traceback: Any) -> bool:
        if exc_type is None or not issubclass(exc_type, KeyboardInterrupt) or isinstance(exc, RunInterrupted):
            return False
        checkpoint = last_checkpoint(files.checkpoints)
        where = (
            f"after step {Path(checkpoint).name.rsplit('-', 1)[-1]} ({checkpoint})"
            if checkpoint is not None
            else "before its first checkpoint (its data, mined negatives and baseline are kept)"
        )
        message = (
            f"interrupted: the run {files.run_dir} stopped {where}; resume it with: make train-embed "
            f"RESUME={files.run_dir}"
        )
        with open(files.log, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} WARNING {message}\n")
        raise RunInterrupted(message) from None

    return on_exit


def load_models(config: RunConfig, data: PreparedData) -> tuple[str, SentenceTransformer, SentenceTransformer]:
    """The training device, the model to train on it and the mining model on ``mining.device``; sizes the model
    cannot give are refused here, before any run folder exists."""
    device = training_device(config)
    mining_device = resolve_device(config.mining.device, "mining.device", for_training=False)
    model = load_configured_model(config, config.model_name, device, "model_name")
    mining_model = load_configured_model(config, config.mining_model_name, mining_device, "mining_model_name")
    logger.info("Mining on %s", mining_device)
    dimension = model.get_embedding_dimension()
    check_matryoshka_dims(config.evaluation.matryoshka_dims, dimension, "evaluation.matryoshka_dims")
    check_matryoshka_dims(config.training.matryoshka_dims, dimension, "training.matryoshka_dims")
    warn_if_truncated(model, data.corpus)
    if "dev" in data.splits and config.training.eval_steps is None:
        logger.warning(
            "dev_size is set but training.eval_steps is null: the dev questions are held out and not scored"
        )
    return device, model, mining_model


def log_triplets(triplets: MinedTriplets) -> None:
    """One line: the training rows (triplets, or (query, answer, negative_1..negative_k) rows) and evaluation
    triplets."""
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


def step_evaluation_set(config: RunConfig, data: PreparedData, triplets: MinedTriplets) -> EvaluationSet:
    """What is scored during training: the dev questions (else the test ones), at most evaluation.max_queries of
    them, ranking the pool bounded by evaluation.max_pool; their keys start with ir_steps, not ir."""
    split, step_triplets = ("dev", triplets.dev) if triplets.dev is not None else ("test", triplets.test)
    return evaluation_set(config, data, step_triplets, split, during_training=True)


def assemble_metrics(
    config: RunConfig,
    data: PreparedData,
    triplets: MinedTriplets,
    baseline: Scores,
    final: FinalScores,
    result: TrainingResult,
    device: str,
    test_set: EvaluationSet,
    step_set: EvaluationSet,
    clock: StageClock,
) -> dict[str, Any]:
    """The contents of ``metrics.json``: the scores, the step history, what each score was measured on, the
    training, the data's counts, timings, memory and provenance."""
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
    if result.chosen_step is not None:
        training["chosen_step"] = result.chosen_step  # final is this checkpoint: the best on the dev questions
    negatives_per_row = len(triplets.train.column_names) - 2
    return {
        "baseline": baseline.metrics,
        "final": final.test.metrics,
        **({"final_dev": final.dev} if final.dev is not None else {}),
        "history": result.history,
        **({"merge": result.merge} if result.merge is not None else {}),
        "evaluation": evaluation_protocol(test_set.record(), step_set.record()),
        "training": training,
        "data": {
            **data.protocol(),  # split: random, split_column, eval_dataset or beir; drop_shared on a given split
            **data.counts(),
            "train_triplets": len(triplets.train),  # training rows: triplets, or n-tuples with more negatives
            # pairs short of negatives that train with in-batch negatives only (mining.unmined_pairs: in_batch)
            "train_pairs_in_batch": len(triplets.train_pairs) if triplets.train_pairs is not None else 0,
            **({"train_negatives_per_row": negatives_per_row} if negatives_per_row > 1 else {}),
            "eval_triplets": len(triplets.test),
            **({"dev_triplets": len(triplets.dev)} if triplets.dev is not None else {}),
        },
        "timings": clock.total(),
        "peak_memory_gib": {stage: round(value, 2) for stage, value in clock.peak_memory.items()},
        "provenance": provenance(config),  # versions, git commit, hub revisions (embedft.run.provenance)
    }
