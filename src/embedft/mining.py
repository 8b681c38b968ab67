"""Hard-negative mining with a separate mining model: mine_hard_negatives' filters over a search that scales.

Training negatives come from the training answers (and corpus_file) only, so no evaluation answer leaks into
training. Evaluation negatives come from the whole answer pool with every positive of the query excluded: a query is
never scored against its own answer as a "negative" (the trap of ``include_positives=True``).

The filters are ``sentence_transformers.util.mine_hard_negatives``' own, applied the same way (a test compares the
two on every option), but the library encodes the whole pool on every call, holds ``16,384 x pool`` scores at once
and searches exactly. Here texts are encoded once through the embedding cache (:mod:`embedft.embeddings`), queries
are searched a chunk at a time against the whole pool, and pools above ``mining.exact_search_limit`` documents are
searched approximately (:mod:`embedft.search`).
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from embedft.config import MiningConfig
from embedft.data import ANSWER, QUERY
from embedft.embeddings import EmbeddingCache
from embedft.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

NEGATIVE = "negative"


@dataclass
class MiningTask:
    """What mine_hard_negatives derives from its pairs: the distinct queries, the distinct documents (the pool,
    then any positive not in it) and, per query, the documents that are its positives."""

    queries: list[str]
    corpus: list[str]
    positives: list[list[int]]  # corpus indices, each query's distinct positives in first-seen order
    max_positives: int  # the most rows any query has (duplicate rows counted, as the library counts them)

    @classmethod
    def from_pairs(cls, queries: list[str], answers: list[str], pool: list[str]) -> MiningTask:
        corpus = list(dict.fromkeys([*pool, *answers]))
        corpus_index = {text: index for index, text in enumerate(corpus)}
        query_index: dict[str, int] = {}
        positives: list[list[int]] = []
        for query, answer in zip(queries, answers):
            if query not in query_index:
                query_index[query] = len(positives)
                positives.append([])
            own = positives[query_index[query]]
            if corpus_index[answer] not in own:
                own.append(corpus_index[answer])
        return cls(list(query_index), corpus, positives, max(Counter(queries).values()) if queries else 0)

    @classmethod
    def from_dataset(
        cls, pairs: Dataset, extra_documents: list[str] | None = None, texts: list[str] | None = None
    ) -> MiningTask:
        """:meth:`from_pairs` with the pool made of the pairs' answers, then ``extra_documents``, reading the pairs a
        batch at a time.

        Args:
            pairs: rows with ``query`` and ``answer``.
            extra_documents: documents that are nobody's positive.
            texts: strings already in memory that include every answer (e.g. ``PreparedData.corpus``): the corpus
                reuses them, in their order, so a million answers are not held twice.
        """
        from embedft.data import iter_pairs, text_digest

        corpus: list[str] = []
        corpus_index: dict[str, int] = {}

        def add(text: str) -> None:
            if text not in corpus_index:
                corpus_index[text] = len(corpus)
                corpus.append(text)

        if texts is not None:
            wanted = {text_digest(answer) for _, answer in iter_pairs(pairs)}
            for text in texts:
                if text_digest(text) in wanted:
                    add(text)
            del wanted
        else:
            for _, answer in iter_pairs(pairs):
                add(answer)
        for text in extra_documents or []:
            add(text)
        query_index: dict[str, int] = {}
        positives: list[list[int]] = []
        rows: list[int] = []
        for query, answer in iter_pairs(pairs):
            if query not in query_index:
                query_index[query] = len(positives)
                positives.append([])
                rows.append(0)
            number = query_index[query]
            rows[number] += 1
            if corpus_index[answer] not in positives[number]:
                positives[number].append(corpus_index[answer])
        return cls(list(query_index), corpus, positives, max(rows, default=0))


@dataclass
class MiningOutcome:
    """Mined rows (query, positive and negative corpus indices) and what the filters did."""

    def row_count(self) -> int:
        return sum(len(block) for block in self.rows)

    def all_rows(self) -> np.ndarray:
        """Every mined row, ``[n, 3]``, in order."""
        return np.concatenate(self.rows) if self.rows else np.empty((0, 3), dtype=np.int64)

    rows: list[np.ndarray] = field(default_factory=list)  # [n, 3] blocks of (query, positive, negative) indices
    candidates: int = 0  # candidates ranked, the query's own positives excluded
    skipped: dict[str, int] = field(default_factory=dict)  # candidates each filter removed
    search: str = "exact"


def derived_range_max(options: MiningConfig, max_positives: int) -> int:
    """The ``range_max`` mine_hard_negatives derives when it is given none (sentence-transformers 6.2's formula):
    ten candidates per negative when filters may skip some, else one; plus room for positives and range_min."""
    filtered = options.margin is not None or options.relative_margin is not None or options.max_score is not None
    return options.range_min + options.num_negatives * (10 if filtered else 1) + max_positives


def select_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positives: list[list[int]],
    positive_scores: list[torch.Tensor],
    options: MiningConfig,
    range_max: int,
    outcome: MiningOutcome,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply mine_hard_negatives' filters to one block of ranked candidates, exactly as the library does.

    The query's positives and padding are excluded; the absolute and relative margins compare with the query's
    lowest positive score; then max_score and min_score; the best ``range_max`` remain, the first ``range_min`` are
    skipped, and ``num_negatives`` are taken from the top or drawn with Python's ``random`` (one draw per query, in
    order, as the library draws them).

    Returns:
        Negative scores and corpus indices, ``[queries, num_negatives]``, best first; -inf marks a missing one.
    """
    import torch

    scores[indices == -1] = -float("inf")
    # Each query's positives as a padded [queries, most positives] matrix (-2 never matches an index).
    counts = np.array([len(own) for own in positives])
    padded = np.full((len(positives), counts.max()), -2, dtype=np.int64)
    owner = np.repeat(np.arange(len(positives)), counts)
    padded[owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)] = [
        index for own in positives for index in own
    ]
    positive_mask = (indices.unsqueeze(2) == torch.from_numpy(padded).unsqueeze(1)).any(dim=2)
    scores[positive_mask] = -float("inf")
    outcome.candidates += int(torch.isfinite(scores).sum())

    def drop(name: str, removed: torch.Tensor) -> None:
        removed &= torch.isfinite(scores)
        outcome.skipped[name] = outcome.skipped.get(name, 0) + int(removed.sum())
        scores[removed] = -float("inf")

    if options.margin is not None or options.relative_margin is not None:
        lowest_positive = torch.stack([own.min() for own in positive_scores]).unsqueeze(1)
        if options.margin is not None:
            drop("absolute_margin", scores + options.margin > lowest_positive)
        if options.relative_margin is not None:
            drop("relative_margin", scores > lowest_positive - lowest_positive.abs() * options.relative_margin)
    if options.max_score is not None:
        drop("max_score", scores > options.max_score)
    if options.min_score is not None:
        drop("min_score", scores < options.min_score)

    batch = torch.arange(len(positives)).unsqueeze(-1)
    negative_scores, local = torch.topk(scores, k=range_max, dim=1)
    negative_indices = indices[batch, local][:, options.range_min :]
    negative_scores = negative_scores[:, options.range_min :]
    if options.sampling_strategy == "top":
        return negative_scores[:, : options.num_negatives], negative_indices[:, : options.num_negatives]
    choices = (negative_indices.size(1) - negative_scores.isinf().sum(1)).clamp(min=options.num_negatives)
    drawn = [random.sample(range(count), k=options.num_negatives) for count in choices.tolist()]
    negative_scores, negative_indices = negative_scores[batch, drawn], negative_indices[batch, drawn]
    negative_scores, order = negative_scores.sort(dim=1, descending=True)
    return negative_scores, negative_indices[batch, order]


def mine(
    task: MiningTask,
    model: SentenceTransformer,
    options: MiningConfig,
    cache: EmbeddingCache,
    seed: int,
    description: str = "mining",
) -> MiningOutcome:
    """Mine negatives for every query of ``task`` against its whole corpus.

    Texts are encoded once through ``cache`` (documents with ``encode_document``, queries with ``encode_query``) and
    normalised; candidates come from an exact search, or an approximate one above ``options.exact_search_limit``
    documents (:func:`embedft.search.build_search`); then :func:`select_negatives` filters them. Queries are handled
    ``options.chunk_size`` at a time, so memory stays bounded; the result does not depend on the chunk size.
    """
    import torch

    from embedft.search import build_search, normalize

    outcome = MiningOutcome()
    if not task.queries:
        return outcome
    range_max = options.range_max
    if range_max is None:
        range_max = derived_range_max(options, task.max_positives)
        logger.info("mining.range_max is null: using %d for %s", range_max, description)
    if options.range_min >= range_max or options.num_negatives > range_max - options.range_min:
        raise ConfigError(
            f"mining.range_max={range_max} leaves fewer than num_negatives={options.num_negatives} candidates after "
            f"range_min={options.range_min}: raise mining.range_max or lower range_min / num_negatives"
        )
    documents = cache.store(model, "document")
    document_keys = documents.encode(
        model, task.corpus, "document", options.batch_size, f"Encoding the {description} pool"
    )
    questions = cache.store(model, "query")
    query_keys = questions.encode(
        model, task.queries, "query", options.batch_size, f"Encoding the {description} queries"
    )

    def document_vectors(start: int, end: int) -> np.ndarray:
        return normalize(documents.gather(task.corpus[start:end], document_keys[start:end]))

    search = build_search(len(task.corpus), document_vectors, options.exact_search_limit, seed, len(task.queries))
    outcome.search = search.kind
    width = range_max + task.max_positives
    # mine_hard_negatives draws sampling_strategy='random' from Python's global generator: seed it for this run and
    # give the caller's state back afterwards.
    outer_state = random.getstate()
    random.seed(seed)
    try:
        for start in tqdm(
            range(0, len(task.queries), options.chunk_size), desc=f"Searching ({search.kind})", unit="chunk"
        ):
            end = min(start + options.chunk_size, len(task.queries))
            query_vectors = normalize(questions.gather(task.queries[start:end], query_keys[start:end]))
            scores, indices = search.search(query_vectors, width)
            positives = task.positives[start:end]
            flat = [index for own in positives for index in own]
            positive_vectors = normalize(documents.gather([task.corpus[i] for i in flat], document_keys[flat]))
            owners = np.repeat(np.arange(len(positives)), [len(own) for own in positives])
            flat_scores = torch.from_numpy(np.einsum("ij,ij->i", query_vectors[owners], positive_vectors))
            positive_scores = list(torch.split(flat_scores, [len(own) for own in positives]))
            negative_scores, negative_indices = select_negatives(
                torch.from_numpy(scores),
                torch.from_numpy(indices),
                positives,
                positive_scores,
                options,
                range_max,
                outcome,
            )
            # One row per (query, positive, found negative), in the library's order: query, positive, negative.
            counts = [len(own) for own in positives]
            per_query = np.repeat(np.arange(len(positives)), counts)
            found = torch.isfinite(negative_scores).numpy()[per_query]
            negatives = negative_indices.numpy()[per_query]
            width_found = found.shape[1]
            block = np.stack(
                [
                    np.repeat(start + per_query, width_found),
                    np.repeat(np.asarray(flat, dtype=np.int64), width_found),
                    negatives.reshape(-1),
                ],
                axis=1,
            )
            outcome.rows.append(block[found.reshape(-1)])
    finally:
        random.setstate(outer_state)
    return outcome


def run_cache(cache: EmbeddingCache | None) -> tuple[EmbeddingCache, tempfile.TemporaryDirectory | None]:
    """``cache``, or a temporary one (removed by the caller) when none is given."""
    if cache is not None:
        return cache, None
    scratch = tempfile.TemporaryDirectory(prefix="embedft-embeddings-")
    return EmbeddingCache(scratch.name), scratch


def triplet_dataset(task: MiningTask, rows: np.ndarray, path: Path | None = None) -> Dataset:
    """``(query, answer, negative)`` texts of mined rows, string-typed even when there are none.

    With ``path`` the rows are streamed to that JSON-lines file (through a temporary file) and read back memory-mapped,
    so a million triplets never sit in memory as Python strings and as an Arrow table at once.
    """
    import json
    import os

    from datasets import Dataset, Features, Value

    features = Features({column: Value("string") for column in (QUERY, ANSWER, NEGATIVE)})
    if path is None or len(rows) == 0:
        columns = {
            QUERY: [task.queries[q] for q in rows[:, 0].tolist()],
            ANSWER: [task.corpus[p] for p in rows[:, 1].tolist()],
            NEGATIVE: [task.corpus[n] for n in rows[:, 2].tolist()],
        }
        triplets = Dataset.from_dict(columns, features=features)
        if path is not None:
            save_triplets(triplets, path)
        return triplets
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "w", encoding="utf-8") as handle:
        for q, p, n in rows.tolist():
            row = {QUERY: task.queries[q], ANSWER: task.corpus[p], NEGATIVE: task.corpus[n]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return load_triplets(path)


def mine_training_triplets(
    train: Dataset,
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    path: Path | None = None,
    texts: list[str] | None = None,
) -> Dataset:
    """Mine ``options.num_negatives`` hard negatives for every training pair.

    Every query is mined against the whole pool: the training answers and any extra documents, never an evaluation
    answer. Every answer of the same query counts as its positive. Pairs for which no candidate passes the filters
    (margin, relative_margin, max_score, min_score) are dropped, and the count is logged.

    Args:
        train: training pairs with ``query`` and ``answer`` columns.
        model: the mining model.
        options: the ``mining:`` section of the config.
        seed: seeds ``sampling_strategy: random`` and the approximate index.
        extra_documents: documents that are nobody's positive (corpus_file); they join the candidate pool.
        cache: where embeddings are kept (None: a temporary folder for this call).
        path: also save the triplets there as JSON lines (streamed; the Dataset is then read back from it).
        texts: strings already in memory that include every training answer (``PreparedData.corpus``), reused
            for the pool instead of a second copy of the answers.

    Returns:
        A Dataset with columns ``query``, ``answer``, ``negative``.
    """
    task = MiningTask.from_dataset(train, extra_documents, texts)
    cache, scratch = run_cache(cache)
    try:
        outcome = mine(task, model, options, cache, seed, "training")
    finally:
        if scratch is not None:
            scratch.cleanup()
    log_outcome(outcome, options)
    rows = outcome.all_rows()
    outcome.rows = []
    kept = len(np.unique(rows[:, 0] * len(task.corpus) + rows[:, 1]))  # (query, positive) pairs with a negative
    wanted = sum(len(own) for own in task.positives)
    if kept < wanted:
        logger.warning(
            "%d of %d training pairs got no negative that passes the mining filters and are left out "
            "(loosen mining.margin / mining.relative_margin / mining.max_score or widen mining.range_max to keep "
            "them)",
            wanted - kept,
            wanted,
        )
    return triplet_dataset(task, rows, path)


def log_outcome(outcome: MiningOutcome, options: MiningConfig) -> None:
    """One line: how many candidates were ranked and what each filter removed."""
    dropped = ", ".join(
        f"{name} {count:,} ({count / max(outcome.candidates, 1):.1%})" for name, count in outcome.skipped.items()
    )
    logger.info(
        "Mining (%s search): %d rows mined from %d candidates%s",
        outcome.search,
        outcome.row_count(),
        outcome.candidates,
        f"; filters removed: {dropped}" if dropped else "",
    )


def mine_evaluation_triplets(
    test: Dataset,
    pool: list[str],
    model: SentenceTransformer,
    batch_size: int,
    other_pairs: Dataset | None = None,
    cache: EmbeddingCache | None = None,
    exact_search_limit: int | None = None,
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
        cache: where embeddings are kept (None: a temporary folder for this call).
        exact_search_limit: pools larger than this are searched approximately (None: always exact).

    Returns:
        A Dataset with columns ``query``, ``answer``, ``negative``, one row per evaluation pair.
    """
    queries, answers = list(test[QUERY]), list(test[ANSWER])
    if other_pairs is not None:
        test_queries = set(queries)
        for query, answer in zip(other_pairs[QUERY], other_pairs[ANSWER]):
            if query in test_queries:
                queries.append(query)
                answers.append(answer)
    task = MiningTask.from_pairs(queries, answers, pool)
    options = MiningConfig(
        num_negatives=1,
        batch_size=batch_size,
        margin=None,
        range_max=None,
        sampling_strategy="top",
        exact_search_limit=exact_search_limit,
    )
    cache, scratch = run_cache(cache)
    try:
        outcome = mine(task, model, options, cache, seed=0, description="evaluation")
    finally:
        if scratch is not None:
            scratch.cleanup()
    wanted = set(zip(test[QUERY], test[ANSWER]))
    triplets = triplet_dataset(task, outcome.all_rows())
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
