"""Contrastive training: the configured in-batch-negatives loss (MNRL, GradCache, GISTEmbed, symmetric, Matryoshka),
the no-duplicates batch sampler, SentenceTransformerTrainer."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft import distributed
from embedft.config import RunConfig
from embedft.errors import ConfigError, OutputError, TrainingError, first_line
from embedft.evaluation import standard_metrics
from embedft.models import column_tasks, load_configured_model, resolve_precision, training_prompts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer, SentenceTransformerTrainingArguments
    from torch import nn

logger = logging.getLogger(__name__)

# The losses whose in-batch negatives a guide model filters (GISTEmbed).
GUIDED_LOSSES = ("gist", "cached_gist")


@dataclass
class TrainingResult:
    """What a finished training run reports: steps, losses and the per-step log."""

    global_step: int
    train_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_step: int | None = None  # the checkpoint a resumed run continued from
    first_step_at: float | None = None  # time.perf_counter() when the first optimizer step ended
    first_step_rss_gib: float | None = None  # the process's peak resident memory until then
    precision: str | None = None  # "bf16", "fp16" or "fp32": what the trainer computed in (None: not known)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def first_step_clock_class() -> type:
    """A TrainerCallback that notes when the first optimizer step of this session ended (for the scale
    benchmark's ``seconds_to_first_step``)."""
    from transformers import TrainerCallback

    class FirstStepClock(TrainerCallback):
        def __init__(self) -> None:
            self.at: float | None = None
            self.peak_rss_gib: float | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.at is None:
                self.at = time.perf_counter()
                self.peak_rss_gib = peak_rss_gib()

    return FirstStepClock


def resumed_intervals_class() -> type:
    """A TrainerCallback that makes a resumed run log, evaluate and save at the intervals it was resumed with.

    The trainer replaces its state with the checkpoint's, which holds the intervals the run started with (it only
    warns that they differ); the decisions to log, evaluate and save read the state. Recomputing them at the start
    of training, after the checkpoint's state was loaded, applies ``training.eval_steps``, ``save_steps`` and
    ``logging_steps`` given with RESUME.
    """
    from transformers import TrainerCallback

    class ResumedIntervals(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            state.compute_steps(args, state.max_steps)

    return ResumedIntervals


def baseline_logger_class() -> type:
    """A TrainerCallback that hands the baseline scores to every logger (TensorBoard, MLflow, ...) at step 0, as
    ``eval_baseline_<metric>``, so a run's curves start from the untouched model. It calls the loggers' ``on_log``
    directly: the trainer's own log history (``metrics.json`` ``history``) keeps step values only."""
    from transformers import TrainerCallback

    class BaselineLogger(TrainerCallback):
        def __init__(self, trainer: Any, baseline: dict[str, float]) -> None:
            self.trainer = trainer
            self.logs = {
                f"eval_baseline_{name}": float(value)
                for name, value in baseline.items()
                if isinstance(value, (int, float))
            }

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:  # a resumed run logged them in its first session
                self.trainer.callback_handler.on_log(args, state, control, dict(self.logs))

    return BaselineLogger


def build_training_arguments(
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    has_evaluator: bool,
    model: SentenceTransformer | None = None,
    columns: Sequence[str] | None = None,
    train_rows: int | None = None,
) -> SentenceTransformerTrainingArguments:
    """Translate the run config into trainer arguments: embedft's own options, then every trainer argument given
    under ``training:`` (``training.trainer_arguments``) as it was written.

    Args:
        config: the run configuration.
        checkpoint_dir: folder for checkpoints.
        device: the training device; fp16/bf16 fall back to fp32 with a warning where it lacks them.
        has_evaluator: whether evaluation runs every ``training.eval_steps``.
        model: the model to train; its query/document prompts become the trainer's column prompts, and a Router
            module in it gets the query/document route of each column.
        columns: the training dataset's text columns; None means the mined (query, answer, negative) triplets.
        train_rows: the number of training rows, from which ``'auto'`` eval and save intervals follow (None: the
            smallest auto interval).

    Raises:
        ConfigError: the trainer refuses a value or a combination (one line naming the key).
    """
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    training = config.training
    fp16, bf16 = resolve_precision(training.fp16, training.bf16, device)
    prompts = training_prompts(model, columns) if model is not None and config.use_prompts else None
    # transformers renamed gradient_checkpointing to activation_checkpointing in 5.x: use the name this version has.
    fields = SentenceTransformerTrainingArguments.__dataclass_fields__
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    steps = optimizer_steps(config, train_rows)
    passthrough = dict(training.trainer_arguments)
    if "metric_for_best_model" in passthrough:
        passthrough["metric_for_best_model"] = trainer_metric(passthrough["metric_for_best_model"], model)
    arguments = dict(
        output_dir=checkpoint_dir,
        num_train_epochs=config.num_epochs,
        max_steps=config.training.max_steps if config.training.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of all steps in transformers 5
        fp16=fp16,
        bf16=bf16,
        **{checkpointing: training.gradient_checkpointing},
        # Every loss uses the other pairs of a batch as negatives: a duplicate text would be its own negative.
        batch_sampler=no_duplicates_batch_sampler(),
        eval_strategy="steps" if has_evaluator and training.eval_steps is not None else "no",
        eval_steps=step_interval(training.eval_steps, steps),
        save_strategy="steps",
        save_steps=step_interval(training.save_steps, steps),
        save_total_limit=training.save_total_limit,
        logging_steps=training.logging_steps,
        logging_first_step=True,
        report_to=[name for name in training.report_to if name != "none"],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=training.dataloader_num_workers,
        use_cpu=device == "cpu",
        run_name=config.run_name,
        prompts=prompts,
        router_mapping=router_mapping(model, columns),
    )
    try:
        return SentenceTransformerTrainingArguments(**{**arguments, **passthrough})
    except (ValueError, TypeError) as exc:
        raise ConfigError(trainer_refusal(exc, list(passthrough))) from None


# 'auto' eval and save intervals: about this many a run, and never closer or further apart than these step counts.
AUTO_INTERVALS = 10
AUTO_MIN_STEPS = 10
AUTO_MAX_STEPS = 1000


def optimizer_steps(config: RunConfig, train_rows: int | None) -> int | None:
    """The optimizer steps the run will take, as the trainer counts them: ``training.max_steps``, else ``num_epochs``
    passes of ``train_rows`` rows in batches of ``batch_size`` on every process, ``gradient_accumulation_steps``
    batches a step (None when the rows are not known)."""
    if config.training.max_steps is not None:
        return config.training.max_steps
    if train_rows is None:
        return None
    if distributed.is_distributed():
        # sentence-transformers drops the last short batch under DDP; the even sampler deals whole rounds out.
        batches = math.ceil((train_rows // config.batch_size) / distributed.world_size())
    else:
        batches = math.ceil(train_rows / config.batch_size)
    return math.ceil(config.num_epochs * max(batches // max(config.training.accumulation_steps, 1), 1))


def step_interval(value: int | float | str | None, steps: int | None) -> int | float | None:
    """An eval or save interval for the trainer: ``'auto'`` becomes ``ceil(steps / AUTO_INTERVALS)`` steps, kept
    within [AUTO_MIN_STEPS, AUTO_MAX_STEPS] (the smallest when ``steps`` is unknown); a number of steps, a share of
    the run in (0, 1) or None pass as they are."""
    if value != "auto":
        return value
    if steps is None:
        return AUTO_MIN_STEPS
    return min(max(math.ceil(steps / AUTO_INTERVALS), AUTO_MIN_STEPS), AUTO_MAX_STEPS)


def trainer_metric(name: str, model: SentenceTransformer | None) -> str:
    """``metric_for_best_model`` as the trainer logs it: embedft's names of the step scores (``ndcg@10``,
    ``ndcg@10_dim256``, ``triplet_accuracy``, as in ``metrics.json`` ``history``) become the evaluator's keys
    (``ir_steps_cosine_ndcg@10``); any other name (``loss``, a raw evaluator key) is passed on unchanged."""
    from embedft.evaluation import RETRIEVAL_METRICS, RETRIEVAL_STEPS, TRIPLET

    similarity = getattr(model, "similarity_fn_name", None) or "cosine"
    if name == "triplet_accuracy":
        return f"{TRIPLET}_{similarity}_accuracy"
    metric, _, dim = name.partition("_dim")
    if metric in RETRIEVAL_METRICS and (not dim or dim.isdigit()):
        return f"{RETRIEVAL_STEPS}{f'_dim{dim}' if dim else ''}_{similarity}_{metric}"
    return name


def trainer_refusal(exc: Exception, passthrough: list[str]) -> str:
    """One line for a value the trainer's arguments refused: the ``training.`` keys its message names (else every
    trainer argument given), and the message itself on one line."""
    message = " ".join(str(exc).replace("--", "").split())
    named = [key for key in passthrough if key in message]
    if not named:
        own = ("eval_steps", "save_steps", "logging_steps", "save_total_limit", "report_to", "max_steps")
        named = [key for key in own if key in message] or passthrough
    keys = ", ".join(f"'training.{key}'" for key in named) or "the training section"
    return f"{keys}: the trainer refuses it: {message}"


def check_training_arguments(config: RunConfig, device: str | None = None) -> None:
    """Construct the trainer arguments the run will use (no model, no data) so that a value or a combination the
    trainer refuses is reported before any model loads.

    Under torchrun, constructing the arguments joins the process group: :func:`embedft.pipeline.train_embed` checks
    them on rank 0 once the group exists, with the process's ``device`` (``load_config`` leaves them alone there).

    Raises:
        ConfigError: the trainer refuses a value (one line naming the key).
    """
    import tempfile

    if device is None:
        if distributed.is_distributed():
            return
        # Validation only: the real device decides bf16/fp16 when training (a CPU without them would warn here).
        device = "cpu"
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, fp16=False, bf16=False))
    with tempfile.TemporaryDirectory() as folder:
        build_training_arguments(config, folder, device, has_evaluator=True)


def no_duplicates_batch_sampler() -> Any:
    """The trainer's ``batch_sampler``: sentence-transformers' no-duplicates sampler, and under torchrun its form
    that gives every process as many full batches (:mod:`embedft.sampler`; a rank with one batch more than the
    others would wait forever for them)."""
    from sentence_transformers.base.sampler import BatchSamplers

    if not distributed.is_distributed():
        return BatchSamplers.NO_DUPLICATES
    from embedft.sampler import EvenNoDuplicatesBatchSampler

    return functools.partial(EvenNoDuplicatesBatchSampler, num_replicas=distributed.world_size())


def router_mapping(model: SentenceTransformer | None, columns: Sequence[str] | None = None) -> dict[str, str]:
    """The trainer's ``router_mapping`` for a model with a Router module: each column's task, as
    ``encode_query``/``encode_document`` route it; empty for other models (the trainer refuses a Router without one).
    """
    from sentence_transformers.sentence_transformer.modules import Router

    # The trainer looks for the Router among the model's top-level modules; so does this.
    if model is None or not any(isinstance(module, Router) for module in model.children()):
        return {}
    return column_tasks(columns)


def is_static(model: SentenceTransformer) -> bool:
    """True for a model that embeds with a StaticEmbedding (token lookup, no transformers tokenizer)."""
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    return any(isinstance(module, StaticEmbedding) for module in model.modules())


def load_guide(config: RunConfig, device: str) -> SentenceTransformer | None:
    """The frozen guide model of the gist losses, on the training device; None for the other losses.

    ``training.guide_model: base`` loads a second, untrained copy of ``model_name`` (the model being trained must not
    guide itself); ``mining`` loads ``mining_model_name``. Both load as the main model does (cache folder, prompts,
    ``max_seq_length``); GISTEmbedLoss re-tokenizes the texts for a guide whose tokenizer differs.

    Raises:
        ConfigError: the guide is a static embedding model, which GISTEmbedLoss cannot use.
        ModelError: the guide cannot be loaded.
    """
    training = config.training
    if training.loss not in GUIDED_LOSSES:
        return None
    key = "model_name" if training.guide_model == "base" else "mining_model_name"
    name = getattr(config, key)
    guide = load_configured_model(config, name, device, key)
    if is_static(guide):
        fix = "set training.guide_model: base" if key == "mining_model_name" else "use training.loss: mnrl"
        raise ConfigError(
            f"'training.loss' {training.loss} needs a guide with a transformers tokenizer, and the guide "
            f"({key} '{name}', training.guide_model: {training.guide_model}) is a static embedding model: {fix}"
        )
    guide.requires_grad_(False)  # the trainer's optimizer takes every parameter of the loss that requires a gradient
    guide.eval()
    logger.info("Guide of the %s loss: %s (%s), frozen", training.loss, name, key)
    return guide


def matryoshka_training_dims(dims: Sequence[int], dimension: int | None) -> list[int]:
    """The sizes MatryoshkaLoss trains: ``dims`` plus the model's full ``dimension``, largest first.

    Raises:
        ConfigError: a size larger than the model's embeddings.
    """
    for dim in dims:
        if dimension is not None and dim > dimension:
            raise ConfigError(f"'training.matryoshka_dims' has {dim}, larger than the model's {dimension} dimensions")
    return sorted({*dims, *([dimension] if dimension is not None else [])}, reverse=True)


def build_loss(
    model: SentenceTransformer,
    config: RunConfig,
    guide: SentenceTransformer | None = None,
    columns: Sequence[str] | None = None,
) -> nn.Module:
    """The loss ``training.loss`` names, wrapped in MatryoshkaLoss when ``training.matryoshka_dims`` is set.

    Every loss takes the (query, answer, negative...) columns as they are and contrasts each query's answer with the
    batch's other answers and all the negatives, cosine similarities divided by ``temperature`` (MNRL's
    scale = 1/temperature, GISTEmbed's temperature). The cached losses embed ``training.mini_batch_size`` texts at a
    time (GradCache), so the batch, and with it the number of negatives, can grow beyond what fits in memory.

    Args:
        model: the model to train.
        config: the run configuration.
        guide: the frozen guide of the gist losses (:func:`load_guide`); ignored by the others.
        columns: the training dataset's columns, to refuse a layout the loss cannot take (None: not checked).

    Returns:
        The loss module, ready for SentenceTransformerTrainer.

    Raises:
        ConfigError: the loss cannot train this model or these columns, or a Matryoshka size is too large.
    """
    from sentence_transformers.sentence_transformer import losses

    name = config.training.loss
    scale = 1.0 / config.temperature
    mini_batch_size = config.training.mini_batch_size
    # Under torchrun every query is also scored against the other processes' answers and negatives.
    gather = distributed.is_distributed()
    if name in GUIDED_LOSSES and guide is None:
        raise ValueError(f"the {name} loss needs its guide model: pass guide=load_guide(config, device)")
    if name == "gist" and columns is not None and len(columns) > 3:
        raise ConfigError(
            f"'training.loss' gist takes one negative per row, the training data has {len(columns) - 2}: use "
            "cached_gist, which takes any number"
        )
    constructors: dict[str, Callable[[], nn.Module]] = {
        "mnrl": lambda: losses.MultipleNegativesRankingLoss(model, scale=scale, gather_across_devices=gather),
        "cached_mnrl": lambda: losses.CachedMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=mini_batch_size, gather_across_devices=gather
        ),
        # What MultipleNegativesSymmetricRankingLoss does, in the form that replaced it (it is deprecated).
        "symmetric": lambda: losses.MultipleNegativesRankingLoss(
            model,
            scale=scale,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
            gather_across_devices=gather,
        ),
        "gist": lambda: losses.GISTEmbedLoss(
            model, guide, temperature=config.temperature, gather_across_devices=gather
        ),
        "cached_gist": lambda: losses.CachedGISTEmbedLoss(
            model, guide, temperature=config.temperature, mini_batch_size=mini_batch_size, gather_across_devices=gather
        ),
    }
    try:
        loss = constructors[name]()
    except ValueError as exc:  # e.g. a static embedding model, which the cached and gist losses cannot train
        raise ConfigError(f"'training.loss' {name} cannot train this model: {first_line(exc)}") from None
    if config.training.matryoshka_dims:
        dims = matryoshka_training_dims(config.training.matryoshka_dims, model.get_embedding_dimension())
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def text_columns(train_rows: Dataset, eval_rows: Dataset | None) -> list[str]:
    """The training rows' columns, then any other column of the evaluation rows: with n-tuple training rows
    (``negative_1..k``) the evaluation triplets' ``negative`` needs its document prompt and route as well."""
    columns = list(train_rows.column_names)
    extra = [column for column in (eval_rows.column_names if eval_rows is not None else []) if column not in columns]
    return columns + extra


def train_model(
    model: SentenceTransformer,
    train_triplets: Dataset,
    eval_triplets: Dataset | None,
    evaluator: BaseEvaluator | None,
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    tensorboard_dir: str | None = None,
    resume_from_checkpoint: str | None = None,
    guide: SentenceTransformer | None = None,
    baseline: dict[str, float] | None = None,
) -> TrainingResult:
    """Fine-tune ``model`` in place with the configured loss (:func:`build_loss`) on (query, answer, negative...)
    rows.

    Args:
        model: the main model, already on ``device``.
        train_triplets: mined training triplets.
        eval_triplets: evaluation triplets, for the evaluation loss (None: no evaluation loss).
        evaluator: run every ``training.eval_steps`` (None: no evaluation during training).
        config: the run configuration.
        checkpoint_dir: where checkpoints go.
        device: the training device.
        tensorboard_dir: where TensorBoard event files go when ``training.report_to`` has tensorboard.
        resume_from_checkpoint: a checkpoint folder to continue from (model, optimizer, scheduler, RNG and the
            position in the data), so the run ends at the same total step count.
        guide: the frozen guide model the gist losses need (:func:`load_guide`); None for the other losses.
        baseline: the base model's scores, logged at step 0 to every logger of ``training.report_to`` as
            ``eval_baseline_<metric>`` (not on a resumed run, whose first session logged them).

    Raises:
        ConfigError: the configured loss cannot train this model or data (see :func:`build_loss`).
        TrainingError: the loss stopped being finite; the checkpoints written before that step are kept.

    Returns:
        The final step, the mean training loss and the per-step history.
    """
    from transformers import set_seed

    set_seed(config.seed)
    if tensorboard_dir is not None:
        # transformers 5's TensorBoardCallback takes its folder from this variable, not from the arguments.
        os.environ["TENSORBOARD_LOGGING_DIR"] = tensorboard_dir
    args = build_training_arguments(
        config,
        checkpoint_dir,
        device,
        evaluator is not None,
        model,
        columns=text_columns(train_triplets, eval_triplets),
        train_rows=len(train_triplets),
    )
    loss = build_loss(model, config, guide, columns=train_triplets.column_names)
    trainer = finite_loss_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_triplets,
        eval_dataset=eval_triplets,
        loss=loss,
        evaluator=evaluator,
    )
    clock = first_step_clock_class()()
    trainer.add_callback(clock)
    if resume_from_checkpoint is not None:
        trainer.add_callback(resumed_intervals_class()())
    if baseline:
        trainer.add_callback(baseline_logger_class()(trainer, baseline))
    try:
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except NonFiniteLoss as exc:
        hint = "lower learning_rate"
        if config.training.fp16:
            hint += "; fp16 is known to overflow with some models (embeddinggemma): use bf16 or fp32"
        raise TrainingError(
            f"the training loss became {exc.value} at step {exc.step}: {hint}; "
            f"checkpoints before that step are kept in {checkpoint_dir}"
        ) from None
    return TrainingResult(
        global_step=output.global_step,
        # The trainer's training_loss covers only this session's steps: after a resume, use the whole log instead.
        train_loss=(
            float(output.training_loss)
            if resume_from_checkpoint is None
            else mean_logged_loss(trainer.state.log_history)
        ),
        history=history_from_log(trainer.state.log_history),
        first_step_at=clock.at,
        first_step_rss_gib=clock.peak_rss_gib,
        precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    )


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean loss per step over the logged steps, each logged loss weighted by the steps it averages.

    The log history is restored from a checkpoint, so this covers a resumed run from its first step; steps after
    the last logging step are not in it.
    """
    total = steps = 0.0
    previous = 0
    for record in log_history:
        if "loss" in record and "step" in record:
            covered = record["step"] - previous
            total += record["loss"] * covered
            steps += covered
            previous = record["step"]
    return total / steps if steps else float("nan")


class NonFiniteLoss(Exception):
    """Raised inside the trainer the moment a loss is NaN or infinite, before the optimizer applies it."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step = step
        self.value = value


def finite_loss_trainer_class() -> type:
    """SentenceTransformerTrainer that stops at the first non-finite training loss, before the update reaches the
    weights (so no later checkpoint holds NaN weights).

    The evaluation loss also goes through ``compute_loss`` (with the model in eval mode): an overflowing one is only
    reported as it is, since it changes no weight.
    """
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer

    class FiniteLossTrainer(SentenceTransformerTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            if model.training and not torch.isfinite(loss.detach()).all():
                raise NonFiniteLoss(self.state.global_step + 1, float(loss.detach().float().mean()))
            return result

    return FiniteLossTrainer


# What the trainer itself logs besides the evaluator's metrics.
TRAINER_LOG_KEYS = ("loss", "learning_rate", "eval_loss", "grad_norm", "eval_runtime")


def history_from_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per logged step: ``step``, ``epoch``, and any of ``loss``, ``learning_rate``, ``eval_loss`` and
    the evaluator metrics under their standard names."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in log_history:
        if "train_runtime" in record:  # the closing summary, not a step
            continue
        step = int(record.get("step", 0))
        entry = by_step.setdefault(step, {"step": step})
        if "epoch" in record:
            entry["epoch"] = float(record["epoch"])
        for key in TRAINER_LOG_KEYS:
            if key in record:
                entry[key] = float(record[key])
        entry.update(standard_metrics({k: v for k, v in record.items() if isinstance(v, (int, float))}))
    return [by_step[step] for step in sorted(by_step)]


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder, or None.

    A checkpoint is complete once ``trainer_state.json`` is in it (the trainer writes it last); one cut short by a
    crash is skipped with a warning.
    """
    folders = [p for p in Path(checkpoint_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        logger.warning("Skipping the incomplete checkpoint %s", folder)
    return None


def checkpoint_processes(checkpoint: Path) -> int:
    """How many training processes wrote ``checkpoint``: one random-state file each (``rng_state_<rank>.pth``), or
    ``rng_state.pth`` for one process."""
    per_rank = len(list(Path(checkpoint).glob("rng_state_*.pth")))
    return per_rank or 1


def history_from_checkpoint(checkpoint: str | None) -> TrainingResult:
    """What a finished training reported, read back from its last checkpoint's trainer state."""
    if checkpoint is None:
        return TrainingResult(global_step=0, train_loss=float("nan"))
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return TrainingResult(
        global_step=int(state["global_step"]),
        train_loss=mean_logged_loss(state["log_history"]),
        history=history_from_log(state["log_history"]),
    )


def save_model_atomically(model: SentenceTransformer, destination: Path) -> None:
    """Save ``model`` so that ``SentenceTransformer(destination)`` loads it, never leaving a half-written folder.

    The model is written to a temporary sibling folder and renamed into place once complete.
    """
    from safetensors import SafetensorError

    destination = Path(destination)
    if destination.exists():
        raise OutputError(f"{destination} already exists and is never overwritten")
    for stale in destination.parent.glob(f".{destination.name}.partial-*"):  # left by a save that crashed
        shutil.rmtree(stale, ignore_errors=True)
    temporary = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    temporary.mkdir()
    try:
        model.save(str(temporary))
        temporary.rename(destination)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error type
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(
            f"cannot save the final model to {destination}: {getattr(exc, 'strerror', None) or first_line(exc)} "
            "(nothing half-written was left; free disk space and resume the run to save it)"
        ) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
