"""SentenceTransformerTrainer with the configured loss and the no-duplicates sampler, stopped at the first
non-finite loss.

This module imports torch and sentence-transformers at the top: only the training stage imports it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
from transformers import set_seed

from embedft.config.schema import RunConfig
from embedft.errors import TrainingError
from embedft.training.arguments import build_training_arguments
from embedft.training.callbacks import BaselineLogger, FirstStepClock, ResumedIntervals
from embedft.training.history import TrainingResult, history_from_log, mean_logged_loss
from embedft.training.length_chunks import chunk_rows, length_chunked
from embedft.training.losses import build_loss

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer


class NonFiniteLoss(Exception):
    """Raised inside the trainer the moment a loss is NaN or infinite, before the optimizer applies it."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step = step
        self.value = value


class FiniteLossTrainer(SentenceTransformerTrainer):
    """SentenceTransformerTrainer that stops at the first non-finite training loss, before the update reaches the
    weights (so no later checkpoint holds NaN weights).

    The evaluation loss also goes through ``compute_loss`` (with the model in eval mode): an overflowing one is only
    reported as it is, since it changes no weight.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        if model.training and not torch.isfinite(loss.detach()).all():
            raise NonFiniteLoss(self.state.global_step + 1, float(loss.detach().float().mean()))
        return result


def main_rows(train_rows: Dataset | DatasetDict) -> Dataset:
    """The training rows with negatives: the dataset itself, or of a DatasetDict (mined rows and the pairs kept
    without negatives) the widest one, whose columns the loss and the prompts are checked against."""
    if isinstance(train_rows, dict):
        return max(train_rows.values(), key=lambda rows: len(rows.column_names))
    return train_rows


def row_count(train_rows: Dataset | DatasetDict) -> int:
    """The training rows of every dataset together."""
    return sum(len(rows) for rows in train_rows.values()) if isinstance(train_rows, dict) else len(train_rows)


def text_columns(train_rows: Dataset, eval_rows: Dataset | None) -> list[str]:
    """The training rows' columns, then any other column of the evaluation rows: with n-tuple training rows
    (``negative_1..k``) the evaluation triplets' ``negative`` needs its document prompt and route as well."""
    columns = list(train_rows.column_names)
    extra = [column for column in (eval_rows.column_names if eval_rows is not None else []) if column not in columns]
    return columns + extra


def build_trainer(
    model: SentenceTransformer,
    train_triplets: Dataset | DatasetDict,
    eval_triplets: Dataset | None,
    evaluator: BaseEvaluator | None,
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    guide: SentenceTransformer | None = None,
    scores_dev: bool = False,
) -> FiniteLossTrainer:
    """The trainer of :func:`train_model`: the run's trainer arguments (:func:`build_training_arguments`) and loss
    (:func:`build_loss`) on these rows."""
    args = build_training_arguments(
        config,
        checkpoint_dir,
        device,
        evaluator is not None,
        model,
        columns=text_columns(main_rows(train_triplets), eval_triplets),
        train_rows=row_count(train_triplets),
        scores_dev=scores_dev,
    )
    return FiniteLossTrainer(
        model=model,
        args=args,
        train_dataset=train_triplets,
        eval_dataset=eval_triplets,
        loss=build_loss(model, config, guide, columns=main_rows(train_triplets).column_names),
        evaluator=evaluator,
    )


def train_model(
    model: SentenceTransformer,
    train_triplets: Dataset | DatasetDict,
    eval_triplets: Dataset | None,
    evaluator: BaseEvaluator | None,
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    tensorboard_dir: str | None = None,
    resume_from_checkpoint: str | None = None,
    guide: SentenceTransformer | None = None,
    baseline: dict[str, float] | None = None,
    scores_dev: bool = False,
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
        scores_dev: whether ``evaluator`` scores dev questions: with ``training.best_on_dev`` the model ends as the
            checkpoint with the best dev score, and the result says which step that was.

    Raises:
        ConfigError: the configured loss cannot train this model or data (see :func:`build_loss`).
        TrainingError: the loss stopped being finite; the checkpoints written before that step are kept.

    Returns:
        The final step, the mean training loss and the per-step history.
    """
    set_seed(config.seed)
    if tensorboard_dir is not None:
        # transformers 5's TensorBoardCallback takes its folder from this variable, not from the arguments.
        os.environ["TENSORBOARD_LOGGING_DIR"] = tensorboard_dir
    trainer = build_trainer(
        model, train_triplets, eval_triplets, evaluator, config, checkpoint_dir, device, guide, scores_dev
    )
    clock = FirstStepClock()
    trainer.add_callback(clock)
    if resume_from_checkpoint is not None:
        trainer.add_callback(ResumedIntervals())
    if baseline:
        trainer.add_callback(BaselineLogger(trainer, baseline))
    try:
        with length_chunked(model, chunk_rows(config.training.length_chunks, device)):
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
        precision="bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        chosen_step=trainer.state.best_global_step if trainer.args.load_best_model_at_end else None,
    )
