"""Hard negatives for every training pair, from the training pool only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.config.schema import MiningConfig
from embedft.mining.diagnostics import MiningDiagnostics, log_outcome
from embedft.mining.engine import mine
from embedft.mining.rows import ntuple_rows, triplet_dataset
from embedft.mining.task import MiningTask
from embedft.models.embedding_cache import EmbeddingCache, cache_or_scratch

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class MinedTrainingSet:
    """Training rows and what the mining did (for ``mining.json``, the report and the log)."""

    triplets: Dataset
    diagnostics: MiningDiagnostics


def mine_training_triplets(*args: Any, **kwargs: Any) -> Dataset:
    """:func:`mine_training_set`'s training rows alone; it takes the same arguments."""
    return mine_training_set(*args, **kwargs).triplets


def mine_training_set(
    train: Dataset,
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    path: Path | None = None,
    texts: list[str] | None = None,
) -> MinedTrainingSet:
    """Mine ``options.num_negatives`` hard negatives for every training pair, and measure the mining.

    Every query is mined against the whole pool: the training answers and any extra documents, never an evaluation
    answer. Every answer of the same query counts as its positive. With one negative each pair gives one row
    ``(query, answer, negative)``; with more, one row ``(query, answer, negative_1, ..., negative_k)``
    (mine_hard_negatives' n-tuple format; MultipleNegativesRankingLoss takes the extra columns as extra negatives).
    Pairs for which no candidate passes the filters (margin, relative_margin, max_score, min_score), and with k > 1
    those that got fewer than k negatives, are dropped, and the counts are logged.

    Args:
        train: training pairs with ``query`` and ``answer`` columns.
        model: the mining model.
        options: the ``mining:`` section of the config.
        seed: seeds ``sampling_strategy: random`` and the approximate index.
        extra_documents: documents that are nobody's positive (corpus_file); they join the candidate pool.
        cache: where embeddings are kept (None: a temporary folder for this call).
        path: also save the rows there as JSON lines (streamed; the Dataset is then read back from it).
        texts: strings already in memory that include every training answer (``PreparedData.corpus``), reused
            for the pool instead of a second copy of the answers.

    Returns:
        The rows, a Dataset with columns ``query``, ``answer`` and ``negative`` (or ``negative_1`` ...
        ``negative_k``), and the :class:`MiningDiagnostics`.
    """
    task = MiningTask.from_dataset(train, extra_documents, texts)
    with cache_or_scratch(cache) as cache:
        outcome = mine(task, model, options, cache, seed, "training")
    log_outcome(outcome, options)
    diagnostics = outcome.diagnostics(options)
    rows = ntuple_rows(outcome.all_rows(), options.num_negatives)
    outcome.rows = []
    if diagnostics.pairs_without_negative:
        logger.warning(
            "%d of %d training pairs got no negative that passes the mining filters and are left out "
            "(loosen mining.margin / mining.relative_margin / mining.max_score or widen mining.range_max to keep "
            "them)",
            diagnostics.pairs_without_negative,
            diagnostics.pairs,
        )
    if diagnostics.pairs_too_few_negatives:
        logger.warning(
            "%d of %d training pairs got fewer than mining.num_negatives=%d negatives that pass the mining filters "
            "and are left out: a (query, answer, negative_1..negative_%d) row needs them all (lower "
            "mining.num_negatives, loosen the filters or widen mining.range_max to keep them)",
            diagnostics.pairs_too_few_negatives,
            diagnostics.pairs,
            options.num_negatives,
            options.num_negatives,
        )
    logger.info("%s", diagnostics.summary())
    return MinedTrainingSet(triplet_dataset(task, rows, path), diagnostics)
