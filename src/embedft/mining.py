"""Hard-negative mining with a separate mining model, through ``sentence_transformers.util.mine_hard_negatives``.

Training negatives come from the training answers only, so no evaluation answer leaks into training. Evaluation
negatives come from the whole answer pool with every positive of the query excluded: a query is never scored
against its own answer as a "negative" (the trap of ``include_positives=True``).
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.config import MiningConfig
from embedft.data import ANSWER, QUERY, document_pool

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

NEGATIVE = "negative"


def query_chunks(queries: list[str], chunk_size: int) -> list[list[int]]:
    """Row indices in chunks of at most ``chunk_size`` rows, keeping all rows of one query in the same chunk.

    A query whose rows alone exceed ``chunk_size`` gets a chunk of its own, so its positives are never split
    (mine_hard_negatives treats every row of a query within one call as a positive of it).
    """
    groups: dict[str, list[int]] = {}
    for index, query in enumerate(queries):
        groups.setdefault(query, []).append(index)
    chunks: list[list[int]] = []
    current: list[int] = []
    for indices in groups.values():
        if current and len(current) + len(indices) > chunk_size:
            chunks.append(current)
            current = []
        current.extend(indices)
    if current:
        chunks.append(current)
    return chunks


def max_rows_per_query(queries: list[str]) -> int:
    """The most rows any one query has: mine_hard_negatives' ``max_positives`` (it counts rows, duplicates too)."""
    return max(Counter(queries).values())


def derived_range_max(options: MiningConfig, max_positives: int) -> int:
    """The ``range_max`` mine_hard_negatives derives when it is given none (sentence-transformers 6.2's formula).

    The library derives it per call from the call's ``max_positives``, so chunks would each get their own window;
    computed once from the whole training set and passed to every chunk, chunked mining equals unchunked.
    """
    filtered = options.margin is not None or options.relative_margin is not None or options.max_score is not None
    # Ten candidates per negative when filters may skip some, else one; plus room for positives and range_min.
    return options.range_min + options.num_negatives * (10 if filtered else 1) + max_positives


def pad_to_max_positives(indices: list[int], queries: list[str], max_positives: int) -> list[int]:
    """``indices`` plus repeats of one row of its largest query, so that query has ``max_positives`` rows.

    mine_hard_negatives ranks ``range_max + max_positives`` candidates per query and then applies the filters, so
    with a filter on, a call with a smaller ``max_positives`` can reach fewer valid candidates. A repeated row
    raises the call's ``max_positives`` (rows are counted) but adds no query, positive or triplet (positives are
    deduplicated), and no draw of ``sampling_strategy: random``.
    """
    counts = Counter(queries[i] for i in indices)
    largest, rows = counts.most_common(1)[0]
    if rows >= max_positives:
        return indices
    first = next(i for i in indices if queries[i] == largest)
    return [*indices, *[first] * (max_positives - rows)]


def mine_training_triplets(
    train: Dataset,
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None = None,
) -> Dataset:
    """Mine ``options.num_negatives`` hard negatives for every training pair.

    Queries are mined in chunks of at most ``options.chunk_size`` rows, each against the whole pool (the training
    answers and any extra documents, never an evaluation answer); the pool's embeddings are computed once and
    reused through mine_hard_negatives' cache. Every chunk gets the same candidate window as one unchunked call
    (``range_max`` derived once for the whole set, and the whole set's ``max_positives``), so chunking never changes
    the result. Pairs for which no candidate passes the filters (margin, relative_margin, max_score) are dropped,
    and the count is logged.

    Args:
        train: training pairs with ``query`` and ``answer`` columns.
        model: the mining model.
        options: the ``mining:`` section of the config.
        seed: seeds ``sampling_strategy: random``.
        extra_documents: documents that are nobody's positive (corpus_file); they join the candidate pool.

    Returns:
        A Dataset with columns ``query``, ``answer``, ``negative``.
    """
    from datasets import concatenate_datasets

    pairs = train.select_columns([QUERY, ANSWER])
    pool = document_pool(pairs[ANSWER], extra_documents)
    queries = pairs[QUERY]
    chunks = query_chunks(queries, options.chunk_size)
    max_positives = max_rows_per_query(queries)
    range_max = options.range_max
    if range_max is None:
        range_max = derived_range_max(options, max_positives)
        logger.info("mining.range_max is null: using %d for the whole training set", range_max)
    # mine_hard_negatives draws sampling_strategy='random' from Python's global generator: seed it for this run
    # and give the caller's state back afterwards.
    outer_state = random.getstate()
    random.seed(seed)
    try:
        with tempfile.TemporaryDirectory(prefix="embedft-mining-") as scratch:
            cache = scratch if len(chunks) > 1 else None  # the pool's embeddings, reused by every chunk
            parts = []
            for number, indices in enumerate(chunks, start=1):
                if len(chunks) > 1:
                    logger.info("Mining chunk %d/%d (%d pairs)", number, len(chunks), len(indices))
                    indices = pad_to_max_positives(indices, queries, max_positives)
                parts.append(mine_chunk(pairs.select(indices), pool, model, options, cache, range_max))
    finally:
        random.setstate(outer_state)
    triplets = concatenate_datasets(parts)
    wanted = set(zip(queries, pairs[ANSWER]))
    dropped = len(wanted) - len(set(zip(triplets[QUERY], triplets[ANSWER])))
    if dropped:
        logger.warning(
            "%d of %d training pairs got no negative that passes the mining filters and are left out "
            "(loosen mining.margin / mining.relative_margin / mining.max_score or widen mining.range_max to keep "
            "them)",
            dropped,
            len(wanted),
        )
    return triplets


def mine_chunk(
    pairs: Dataset,
    pool: list[str],
    model: SentenceTransformer,
    options: MiningConfig,
    cache: str | None,
    range_max: int,
) -> Dataset:
    """One mine_hard_negatives call with every ``mining:`` option passed through and an explicit ``range_max``.

    A call in which no pair keeps a negative comes back with untyped (null) columns; it is replaced by an empty
    string-typed triplet set, so concatenating chunks keeps the schema even when every chunk is empty.
    """
    from datasets import Dataset, Features, Value
    from sentence_transformers.util import mine_hard_negatives

    triplets = mine_hard_negatives(
        pairs,
        model,
        anchor_column_name=QUERY,
        positive_column_name=ANSWER,
        corpus=pool,
        range_min=options.range_min,
        range_max=range_max,
        absolute_margin=options.margin,
        relative_margin=options.relative_margin,
        max_score=options.max_score,
        num_negatives=options.num_negatives,
        sampling_strategy=options.sampling_strategy,
        include_positives=False,
        output_format="triplet",
        batch_size=options.batch_size,
        cache_folder=cache,
        verbose=True,
    )
    if len(triplets) == 0:
        columns = [QUERY, ANSWER, NEGATIVE]
        return Dataset.from_dict({c: [] for c in columns}, features=Features({c: Value("string") for c in columns}))
    return triplets


def mine_evaluation_triplets(
    test: Dataset,
    pool: list[str],
    model: SentenceTransformer,
    batch_size: int,
    other_pairs: Dataset | None = None,
) -> Dataset:
    """One hardest negative per evaluation pair, from the whole answer pool, never one of the query's positives.

    No margin or range filter is applied: the negative is simply the answer the mining model ranks highest among
    those that are not a positive of the query. Triplet accuracy is then the share of pairs whose own answer beats
    the strongest wrong answer in the pool.

    Args:
        test: evaluation pairs.
        pool: every candidate answer (train and test answers, and any extra documents).
        model: the mining model.
        batch_size: encoding batch size.
        other_pairs: further known pairs (e.g. the training split); their answers to an evaluation question are
            positives too, so they are excluded as negatives.

    Returns:
        A Dataset with columns ``query``, ``answer``, ``negative``, one row per evaluation pair.
    """
    from datasets import concatenate_datasets
    from sentence_transformers.util import mine_hard_negatives

    pairs = test.select_columns([QUERY, ANSWER])
    if other_pairs is not None:
        test_queries = set(pairs[QUERY])
        related = [i for i, query in enumerate(other_pairs[QUERY]) if query in test_queries]
        if related:
            pairs = concatenate_datasets([pairs, other_pairs.select_columns([QUERY, ANSWER]).select(related)])
    triplets = mine_hard_negatives(
        pairs,
        model,
        anchor_column_name=QUERY,
        positive_column_name=ANSWER,
        corpus=pool,
        num_negatives=1,
        sampling_strategy="top",
        include_positives=False,
        output_format="triplet",
        batch_size=batch_size,
        verbose=False,
    )
    wanted = set(zip(test[QUERY], test[ANSWER]))
    keep = [i for i, pair in enumerate(zip(triplets[QUERY], triplets[ANSWER])) if pair in wanted]
    return triplets.select(keep)


def save_triplets(triplets: Dataset, path: Path) -> None:
    """Write triplets as JSON lines through a temporary file, so an interrupted write never looks complete."""
    import os

    temporary = path.with_name(f".{path.name}.partial")
    triplets.to_json(temporary, lines=True, force_ascii=False)
    os.replace(temporary, path)


def load_triplets(path: str | Path) -> Dataset:
    """Read triplets saved with ``Dataset.to_json(..., lines=True)``."""
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")
