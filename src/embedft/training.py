"""Contrastive training: MultipleNegativesRankingLoss, the no-duplicates batch sampler, SentenceTransformerTrainer."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.config import RunConfig
from embedft.evaluation import standard_metrics
from embedft.models import resolve_precision, training_prompts

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer, SentenceTransformerTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a finished training run reports: steps, losses and the per-step log."""

    global_step: int
    train_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)


def build_training_arguments(
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    has_evaluator: bool,
    model: SentenceTransformer | None = None,
) -> SentenceTransformerTrainingArguments:
    """Translate the run config into trainer arguments.

    Args:
        config: the run configuration.
        checkpoint_dir: folder for checkpoints.
        device: the training device; on a CPU fp16/bf16 fall back to fp32 with a warning.
        has_evaluator: whether evaluation runs every ``training.eval_steps``.
        model: the model to train; its query/document prompts become the trainer's column prompts.
    """
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    training = config.training
    fp16, bf16 = resolve_precision(training.fp16, training.bf16, device)
    prompts = training_prompts(model) if model is not None and config.use_prompts else None
    # transformers renamed gradient_checkpointing to activation_checkpointing in 5.x: use the name this version has.
    fields = SentenceTransformerTrainingArguments.__dataclass_fields__
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return SentenceTransformerTrainingArguments(
        output_dir=checkpoint_dir,
        num_train_epochs=config.num_epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.effective_warmup_ratio,  # a float in [0, 1) is a ratio of all steps in transformers 5
        fp16=fp16,
        bf16=bf16,
        **{checkpointing: training.gradient_checkpointing},
        # MNRL uses the other pairs of a batch as negatives: a duplicate text would be its own negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps" if has_evaluator else "no",
        eval_steps=training.eval_steps,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        logging_steps=training.logging_steps,
        logging_first_step=True,
        report_to=list(training.report_to),
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=training.dataloader_num_workers,
        use_cpu=device == "cpu",
        run_name=config.run_name,
        prompts=prompts,
    )


def train_model(
    model: SentenceTransformer,
    train_triplets: Dataset,
    eval_triplets: Dataset | None,
    evaluator: BaseEvaluator | None,
    config: RunConfig,
    checkpoint_dir: str,
    device: str,
    tensorboard_dir: str | None = None,
) -> TrainingResult:
    """Fine-tune ``model`` in place with MultipleNegativesRankingLoss on (query, answer, negative) triplets.

    Args:
        model: the main model, already on ``device``.
        train_triplets: mined training triplets.
        eval_triplets: evaluation triplets, for the evaluation loss (None: no evaluation loss).
        evaluator: run every ``training.eval_steps`` (None: no evaluation during training).
        config: the run configuration.
        checkpoint_dir: where checkpoints go.
        device: the training device.
        tensorboard_dir: where TensorBoard event files go when ``training.report_to`` has tensorboard.

    Returns:
        The final step, the mean training loss and the per-step history.
    """
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import set_seed

    set_seed(config.seed)
    if tensorboard_dir is not None:
        # transformers 5's TensorBoardCallback takes its folder from this variable, not from the arguments.
        os.environ["TENSORBOARD_LOGGING_DIR"] = tensorboard_dir
    args = build_training_arguments(config, checkpoint_dir, device, evaluator is not None, model)
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / config.temperature)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_triplets,
        eval_dataset=eval_triplets,
        loss=loss,
        evaluator=evaluator,
    )
    output = trainer.train()
    return TrainingResult(
        global_step=output.global_step,
        train_loss=float(output.training_loss),
        history=history_from_log(trainer.state.log_history),
    )


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
        for key in ("loss", "learning_rate", "eval_loss", "grad_norm"):
            if key in record:
                entry[key] = float(record[key])
        entry.update(standard_metrics({k: v for k, v in record.items() if isinstance(v, (int, float))}))
    return [by_step[step] for step in sorted(by_step)]


def save_model_atomically(model: SentenceTransformer, destination: Path) -> None:
    """Save ``model`` so that ``SentenceTransformer(destination)`` loads it, never leaving a half-written folder.

    The model is written to a temporary sibling folder and renamed into place once complete.
    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists")
    temporary = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)  # left by a crashed save of this process id
    temporary.mkdir()
    try:
        model.save(str(temporary))
        temporary.rename(destination)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
