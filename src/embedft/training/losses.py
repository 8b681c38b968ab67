"""The configured in-batch-negatives loss: MNRL, GradCache, GISTEmbed with its guide, symmetric, Matryoshka."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from embedft.config.schema import GUIDED_LOSSES, RunConfig, TrainingConfig
from embedft.config.validation import check_gist_negatives, check_matryoshka_dims, guide_key, static_guide_refusal
from embedft.errors import ConfigError, first_line
from embedft.models.loading import is_static, load_configured_model
from embedft.training import distributed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sentence_transformers.sentence_transformer import SentenceTransformer
    from torch import nn

logger = logging.getLogger(__name__)


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
    key = guide_key(training)
    name = getattr(config, key)
    guide = load_configured_model(config, name, device, key)
    if is_static(guide):
        raise ConfigError(static_guide_refusal(training, key, name))
    guide.requires_grad_(False)  # the trainer's optimizer takes every parameter of the loss that requires a gradient
    guide.eval()
    logger.info("Guide of the %s loss: %s (%s), frozen", training.loss, name, key)
    return guide


def matryoshka_training_dims(dims: Sequence[int], dimension: int | None) -> list[int]:
    """The sizes MatryoshkaLoss trains: ``dims`` plus the model's full ``dimension``, largest first.

    Raises:
        ConfigError: a size larger than the model's embeddings.
    """
    check_matryoshka_dims(dims, dimension, "training.matryoshka_dims")
    return sorted({*dims, *([dimension] if dimension is not None else [])}, reverse=True)


def contrast_options(training: TrainingConfig) -> dict[str, Any]:
    """What the mnrl and cached_mnrl losses contrast and how hard negatives weigh: ``training.directions``,
    ``partition_mode``, ``hardness_mode`` and ``hardness_strength``, as MultipleNegativesRankingLoss takes them."""
    return {
        "directions": tuple(training.directions),
        "partition_mode": training.partition_mode,
        "hardness_mode": training.hardness_mode,
        "hardness_strength": training.hardness_strength,
    }


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
    if columns is not None:
        check_gist_negatives(name, len(columns) - 2)
    contrast = contrast_options(config.training)
    constructors: dict[str, Callable[[], nn.Module]] = {
        "mnrl": lambda: losses.MultipleNegativesRankingLoss(
            model, scale=scale, gather_across_devices=gather, **contrast
        ),
        "cached_mnrl": lambda: losses.CachedMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=mini_batch_size, gather_across_devices=gather, **contrast
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
