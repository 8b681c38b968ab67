"""Trainer arguments given under ``training:`` with the trainer's own names: which embedft sets itself, and the
type of the others.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from embedft.config.types import coerce
from embedft.errors import ConfigError

# Trainer arguments embedft sets from its own options: one given under training: is refused with the key to set.
OWNED_TRAINER_ARGUMENTS = {
    "output_dir": "set output_dir (a run keeps its checkpoints in <run>/checkpoints)",
    "per_device_train_batch_size": "set batch_size",
    "per_device_eval_batch_size": "set batch_size",
    "num_train_epochs": "set num_epochs",
    "learning_rate": "set the top-level learning_rate",
    "weight_decay": "set the top-level weight_decay",
    "warmup_steps": "set the top-level warmup_ratio (a share of the optimizer steps)",
    "seed": "set the top-level seed",
    "data_seed": "set the top-level seed",
    "batch_sampler": "batches never hold a text twice (a repeated text would be its own negative)",
    "prompts": "set use_prompts, or query_prompt and document_prompt",
    "router_mapping": "each column is routed by the model's own Router module",
    "eval_strategy": "set training.eval_steps (null: no evaluation during training)",
    "save_strategy": "set training.save_steps",
    "use_cpu": "set device",
    "run_name": "set run_name",
    "activation_checkpointing": "set training.gradient_checkpointing",
    "gradient_checkpointing_kwargs": "set training.gradient_checkpointing",
    "activation_checkpointing_kwargs": "set training.gradient_checkpointing",
    "resume_from_checkpoint": "resume a run with --resume RUN (make train-embed RESUME=latest)",
    "logging_dir": "TensorBoard events go to <run>/tensorboard",
}


def trainer_argument_types() -> dict[str, Any]:
    """Every ``SentenceTransformerTrainingArguments`` field and its type annotation (Any where it cannot be
    resolved). Imports sentence-transformers, which takes seconds: called only for a key that is not embedft's own."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    try:
        hints = typing.get_type_hints(SentenceTransformerTrainingArguments)
    except Exception:  # an annotation this Python cannot evaluate: the arguments' constructor still checks values
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}


def trainer_argument(dotted: str, key: str, value: Any) -> Any:
    """A trainer argument given under ``training:``: refused when embedft sets it, its value checked against the
    field's type when that is a plain one (int, float, bool, str, or null); other values are checked by constructing
    the arguments (:func:`embedft.training.arguments.check_training_arguments`).

    Raises:
        ConfigError: embedft sets this argument itself, or the value has the wrong type.
    """
    if key in OWNED_TRAINER_ARGUMENTS:
        raise ConfigError(f"'{dotted}' is set by embedft from its own options: {OWNED_TRAINER_ARGUMENTS[key]}")
    annotation = trainer_argument_types()[key]
    plain = (int, float, bool, str, type(None))
    if annotation in plain or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and all(arg in plain for arg in typing.get_args(annotation))
    ):
        return coerce(dotted, value, annotation)
    return value
