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
    """Training rows and what the mining did (for ``mining.json``, the report and the log); ``pairs``: the
    (query, answer) pairs ``mining.unmined_pairs: in_batch`` keeps without negatives (None when there are none)."""

    triplets: Dataset
    diagnostics: MiningDiagnostics
    pairs: Dataset | None = None


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
    pairs_path: Path | None = None,
) -> MinedTrainingSet:
    """Mine ``options.num_negatives`` hard negatives for every training pair, and measure the mining.

    Every query is mined against the whole pool: the training answers and any extra documents, never an evaluation
    answer. Every answer of the same query counts as its positive. With one negative each pair gives one row
    ``(query, answer, negative)``; with more, one row ``(query, answer, negative_1, ..., negative_k)``
    (mine_hard_negatives' n-tuple format; MultipleNegativesRankingLoss takes the extra columns as extra negatives).
    Pairs for which no candidate passes the filters (margin, relative_margin, max_score, min_score), and with k > 1
    those that got fewer than k negatives, are kept as (query, answer) pairs, given random negatives, or dropped, as
    ``mining.unmined_pairs`` says, and the counts are logged.

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
        pairs_path: where the pairs kept without negatives are saved (``mining.unmined_pairs: in_batch``).

    Returns:
        The rows, a Dataset with columns ``query``, ``answer`` and ``negative`` (or ``negative_1`` ...
        ``negative_k``), and the :class:`MiningDiagnostics`.
    """
    task = MiningTask.from_dataset(train, extra_documents, texts)
    with cache_or_scratch(cache) as cache:
        outcome = mine(task, model, options, cache, seed, "training", unmined=options.unmined_pairs)
    log_outcome(outcome, options)
    diagnostics = outcome.diagnostics(options)
    rows = ntuple_rows(outcome.all_rows(), options.num_negatives)
    outcome.rows = []
    log_unmined(diagnostics, options)
    logger.info("%s", diagnostics.summary())
    unmined = outcome.unmined_pairs()
    pairs = triplet_dataset(task, unmined, pairs_path) if len(unmined) else None
    return MinedTrainingSet(triplet_dataset(task, rows, path), diagnostics, pairs)


def log_unmined(diagnostics: MiningDiagnostics, options: MiningConfig) -> None:
    """One line on the pairs short of negatives, and what ``mining.unmined_pairs`` made of them."""
    short = diagnostics.pairs_without_negative + diagnostics.pairs_too_few_negatives
    if not short:
        return
    wanted = (
        "no negative that passes"
        if options.num_negatives == 1
        else f"fewer than mining.num_negatives={options.num_negatives} negatives that pass"
    )
    what = f"{short:,} of {diagnostics.pairs:,} training pairs got {wanted} the mining filters"
    if options.unmined_pairs == "in_batch":
        logger.info("%s: they train as (query, answer) pairs with in-batch negatives only", what)
    elif options.unmined_pairs == "random_negative":
        logger.info(
            "%s: %d random negatives ranked below the candidate window fill them (%d pairs left out)",
            what,
            diagnostics.random_negatives,
            diagnostics.pairs_left_out,
        )
    else:
        logger.warning(
            "%s and are left out (mining.unmined_pairs: in_batch or random_negative keeps them; or loosen "
            "mining.margin / relative_margin / max_score, or widen mining.range_max)",
            what,
        )
