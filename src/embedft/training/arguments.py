"""The run config as SentenceTransformerTrainingArguments, checked before any model loads."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any

from embedft.columns import column_tasks
from embedft.config.schema import RunConfig
from embedft.errors import ConfigError
from embedft.evaluation.metrics import RETRIEVAL_METRICS, RETRIEVAL_STEPS, TRIPLET
from embedft.models.devices import resolve_precision
from embedft.models.prompts import training_prompts
from embedft.training import distributed
from embedft.training.sampler import EvenNoDuplicatesBatchSampler

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sentence_transformers.sentence_transformer import SentenceTransformer, SentenceTransformerTrainingArguments


def build_training_arguments(
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    has_evaluator: bool,
    model: SentenceTransformer | None = None,
    columns: Sequence[str] | None = None,
    train_rows: int | None = None,
    scores_dev: bool = False,
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
        scores_dev: whether the evaluator scores dev questions; with ``training.best_on_dev`` the best checkpoint
            on them becomes the final model (:func:`best_checkpoint_arguments`).

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
    eval_steps = step_interval(training.eval_steps, steps)
    save_steps = step_interval(training.save_steps, steps)
    evaluates = has_evaluator and training.eval_steps is not None
    best = best_checkpoint_arguments(config, model, eval_steps, save_steps) if evaluates and scores_dev else {}
    passthrough = {**best, **training.trainer_arguments}
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
        eval_strategy="steps" if evaluates else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=training.save_total_limit,
        logging_steps=logging_interval(training.logging_steps, steps),
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


def best_checkpoint_arguments(
    config: RunConfig, model: SentenceTransformer | None, eval_steps: int | float, save_steps: int | float
) -> dict[str, Any]:
    """The trainer arguments that make the checkpoint with the best dev NDCG@10 (triplet accuracy without retrieval
    evaluation) the final model, when ``training.best_on_dev`` is on: ``load_best_model_at_end`` on that metric,
    and a checkpoint at every evaluation (the trainer needs save_steps to be a multiple of eval_steps; it also
    evaluates and saves after the last step). Trainer arguments given under ``training:`` still win."""
    if not config.training.best_on_dev:
        return {}
    metric = "ndcg@10" if config.evaluation.information_retrieval else "triplet_accuracy"
    arguments: dict[str, Any] = {
        "load_best_model_at_end": True,
        "metric_for_best_model": metric,
        "greater_is_better": True,
    }
    if not (isinstance(save_steps, int) and isinstance(eval_steps, int) and save_steps % eval_steps == 0):
        arguments["save_steps"] = eval_steps
    return arguments


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


# 'auto' logging: about this many logged losses a run, never further apart than AUTO_MAX_LOGGING_STEPS.
AUTO_LOG_POINTS = 50

AUTO_MAX_LOGGING_STEPS = 10


def logging_interval(value: int | float | str, steps: int | None) -> int | float:
    """``logging_steps`` for the trainer: ``'auto'`` logs about :data:`AUTO_LOG_POINTS` times a run (every step on
    a short run, so its loss plot has a curve), at most every :data:`AUTO_MAX_LOGGING_STEPS` steps; numbers pass."""
    if value != "auto":
        return value
    if steps is None:
        return AUTO_MAX_LOGGING_STEPS
    return min(max(math.ceil(steps / AUTO_LOG_POINTS), 1), AUTO_MAX_LOGGING_STEPS)


def trainer_metric(name: str, model: SentenceTransformer | None) -> str:
    """``metric_for_best_model`` as the trainer logs it: embedft's names of the step scores (``ndcg@10``,
    ``ndcg@10_dim256``, ``triplet_accuracy``, as in ``metrics.json`` ``history``) become the evaluator's keys
    (``ir_steps_cosine_ndcg@10``); any other name (``loss``, a raw evaluator key) is passed on unchanged."""
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

    Under torchrun, constructing the arguments joins the process group: :func:`embedft.run.pipeline.train_embed` checks
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
    that gives every process as many full batches (:mod:`embedft.training.sampler`; a rank with one batch more than the
    others would wait forever for them)."""
    from sentence_transformers.base.sampler import BatchSamplers

    if not distributed.is_distributed():
        return BatchSamplers.NO_DUPLICATES

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
