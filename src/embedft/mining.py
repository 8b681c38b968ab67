"""Hard-negative mining with a separate mining model: mine_hard_negatives' filters over a search that scales.

Training negatives come from the training answers (and corpus_file) only, so no evaluation answer leaks into
training. Evaluation negatives come from the whole answer pool with every positive of the query excluded: a query is
never scored against its own answer as a "negative" (the trap of ``include_positives=True``).

The filters are ``sentence_transformers.util.mine_hard_negatives``' own, applied the same way (a test compares the
two on every option), but the library encodes the whole pool on every call, holds ``16,384 x pool`` scores at once
and searches exactly. Here texts are encoded once through the embedding cache (:mod:`embedft.embeddings`), queries
are searched a chunk at a time against the whole pool, and pools above ``mining.exact_search_limit`` documents are
searched approximately (:mod:`embedft.search`).

One negative per pair gives ``(query, answer, negative)`` triplets; more give one ``(query, answer, negative_1, ...,
negative_k)`` row per pair, the library's n-tuple format. Training mining also measures itself
(:class:`MiningDiagnostics`, the run's ``mining.json``): the score distributions, what each filter removed, the pairs
left out, and how many negatives are near-duplicates of their positive.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from embedft.config import MiningConfig
from embedft.data import ANSWER, QUERY
from embedft.embeddings import EmbeddingCache
from embedft.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import torch
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

NEGATIVE = "negative"
# A mined negative this close to the row's positive (cosine under the mining model) is most likely the query's own
# answer in other words: a false negative that trains the model to push the right answer away.
NEAR_DUPLICATE_SIMILARITY = 0.95
SCORE_QUANTILES = (5, 25, 50, 75, 95)  # percentiles of each score distribution in mining.json
# Fixed histogram bins over the whole cosine range, so runs and models compare bin by bin.
HISTOGRAM_EDGES = tuple(round(-1.0 + 0.025 * i, 3) for i in range(81))
SIMILARITY_BLOCK = 16_384  # negatives whose vectors are gathered at once for the positive-negative similarity


def negative_columns(num_negatives: int) -> list[str]:
    """The negative columns of mined training rows: ``negative`` for triplets, else ``negative_1`` ...
    ``negative_k``, as mine_hard_negatives names them with ``output_format="n-tuple"``."""
    if num_negatives == 1:
        return [NEGATIVE]
    return [f"{NEGATIVE}_{i}" for i in range(1, num_negatives + 1)]


def negative_columns_of(triplets: Dataset) -> list[str]:
    """The negative columns a mined dataset has (``negative``, or ``negative_1`` ... ``negative_k``), in order."""
    names = [name for name in triplets.column_names if name == NEGATIVE or name.startswith(f"{NEGATIVE}_")]
    return sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]) if name != NEGATIVE else 0)


@dataclass
class MiningTask:
    """What mine_hard_negatives derives from its pairs: the distinct queries, the distinct documents (the pool,
    then any positive not in it) and, per query, the documents that are its positives."""

    queries: list[str]
    corpus: list[str]
    positives: list[list[int]]  # corpus indices, each query's distinct positives in first-seen order
    max_positives: int  # the most rows any query has (duplicate rows counted, as the library counts them)
    # Per query, the corpus index of the document whose text is the query itself, or -1 when there is none.
    query_documents: list[int] = field(default_factory=list)

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
        return cls(
            list(query_index),
            corpus,
            positives,
            max(Counter(queries).values()) if queries else 0,
            [corpus_index.get(query, -1) for query in query_index],
        )

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
        return cls(
            list(query_index), corpus, positives, max(rows, default=0), [corpus_index.get(q, -1) for q in query_index]
        )


@dataclass
class MiningOutcome:
    """Mined rows (query, positive and negative corpus indices), what the filters did, and the scores behind them.

    A (query, positive) pair's rows are consecutive, best negative first. With ``num_negatives > 1`` only pairs that
    got all their negatives have rows (mine_hard_negatives' n-tuple rule), so every pair there has exactly
    ``num_negatives`` rows.
    """

    def row_count(self) -> int:
        return sum(len(block) for block in self.rows)

    def all_rows(self) -> np.ndarray:
        """Every mined row, ``[n, 3]``, in order."""
        return np.concatenate(self.rows) if self.rows else np.empty((0, 3), dtype=np.int64)

    rows: list[np.ndarray] = field(default_factory=list)  # [n, 3] blocks of (query, positive, negative) indices
    candidates: int = 0  # candidates ranked, the query's own positives excluded
    skipped: dict[str, int] = field(default_factory=dict)  # candidates each filter removed
    search: str = "exact"
    range_max: int | None = None  # the range_max used (derived when mining.range_max is null)
    pairs: int = 0  # (query, positive) pairs searched
    pairs_without_negative: int = 0  # pairs no candidate passed the filters for: no rows
    pairs_too_few_negatives: int = 0  # some negatives, fewer than num_negatives (> 1): no rows (n-tuple rule)
    # Per chunk, float32: each pair's query-positive score; each row's query-negative score; and each row's cosine
    # between its positive and its negative (both pool documents).
    positive_scores: list[np.ndarray] = field(default_factory=list)
    negative_scores: list[np.ndarray] = field(default_factory=list)
    positive_negative: list[np.ndarray] = field(default_factory=list)

    def diagnostics(self, options: MiningConfig) -> MiningDiagnostics:
        """What this mining did, in numbers (see :class:`MiningDiagnostics`)."""
        similarities = joined(self.positive_negative)
        return MiningDiagnostics(
            search=self.search,
            num_negatives=options.num_negatives,
            pairs=self.pairs,
            pairs_kept=self.pairs - self.pairs_without_negative - self.pairs_too_few_negatives,
            pairs_without_negative=self.pairs_without_negative,
            pairs_too_few_negatives=self.pairs_too_few_negatives,
            candidates=self.candidates,
            filtered=dict(self.skipped),
            negatives=len(similarities),
            near_duplicates=int((similarities > NEAR_DUPLICATE_SIMILARITY).sum()),
            positive_scores=score_summary(joined(self.positive_scores)),
            negative_scores=score_summary(joined(self.negative_scores)),
            positive_negative_similarity=score_summary(similarities),
            options={
                **{
                    name: getattr(options, name)
                    for name in ("margin", "relative_margin", "max_score", "min_score", "range_min")
                },
                "range_max": self.range_max if self.range_max is not None else options.range_max,
                "sampling_strategy": options.sampling_strategy,
            },
        )


def joined(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.float32)


def score_summary(values: np.ndarray) -> dict[str, Any]:
    """``count``, ``mean``, ``std``, ``min``, ``max``, the :data:`SCORE_QUANTILES` percentiles and the counts per
    :data:`HISTOGRAM_EDGES` bin of ``values`` (cosine similarities); the statistics are None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    # Cosines of unit vectors can round past +-1: they still count in the outer bins.
    histogram, _ = np.histogram(np.clip(values, -1.0, 1.0), bins=np.asarray(HISTOGRAM_EDGES))
    empty = len(values) == 0
    quantiles = np.percentile(values, SCORE_QUANTILES) if not empty else [None] * len(SCORE_QUANTILES)
    return {
        "count": len(values),
        "mean": None if empty else round(float(values.mean()), 6),
        "std": None if empty else round(float(values.std()), 6),
        "min": None if empty else round(float(values.min()), 6),
        "max": None if empty else round(float(values.max()), 6),
        "quantiles": {
            str(q): None if value is None else round(float(value), 6) for q, value in zip(SCORE_QUANTILES, quantiles)
        },
        "histogram": histogram.tolist(),
    }


@dataclass
class MiningDiagnostics:
    """What training mining did, for ``mining.json``, the report and one log line.

    Scores are cosine similarities under the mining model. Positive scores cover every (query, positive) pair
    searched, negative scores the negatives kept (as mine_hard_negatives' own statistics do).
    """

    search: str  # "exact" or "approximate"; "none" when nothing was mined (given negatives only)
    num_negatives: int
    pairs: int  # (query, positive) pairs searched
    pairs_kept: int  # pairs that became training rows
    pairs_without_negative: int  # no candidate passed the filters: left out
    pairs_too_few_negatives: int  # fewer than num_negatives (> 1) passed: left out
    candidates: int  # candidates ranked, the query's own positives excluded
    filtered: dict[str, int]  # candidates each filter removed, in the order they were applied
    negatives: int  # negatives kept (training rows x num_negatives)
    near_duplicates: int  # kept negatives whose cosine with the row's positive is above NEAR_DUPLICATE_SIMILARITY
    positive_scores: dict[str, Any]  # score_summary of the query-positive scores
    negative_scores: dict[str, Any]  # score_summary of the query-negative scores
    positive_negative_similarity: dict[str, Any]  # score_summary of each kept negative's cosine with its positive
    options: dict[str, Any] = field(default_factory=dict)  # the mining filters in force
    given: dict[str, Any] | None = None  # GivenNegatives.to_dict() when the data's own negatives were read

    @property
    def near_duplicate_rate(self) -> float:
        return self.near_duplicates / self.negatives if self.negatives else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``mining.json`` document."""
        return {
            "search": self.search,
            "num_negatives": self.num_negatives,
            "options": self.options,
            "pairs": {
                "total": self.pairs,
                "kept": self.pairs_kept,
                "without_negative": self.pairs_without_negative,
                "too_few_negatives": self.pairs_too_few_negatives,
            },
            "candidates": {"ranked": self.candidates, "filtered": self.filtered},
            "negatives": self.negatives,
            "near_duplicates": {
                "threshold": NEAR_DUPLICATE_SIMILARITY,
                "count": self.near_duplicates,
                "rate": round(self.near_duplicate_rate, 6),
            },
            **({"given_negatives": self.given} if self.given is not None else {}),
            "histogram_edges": list(HISTOGRAM_EDGES),
            "scores": {
                "query_positive": self.positive_scores,
                "query_negative": self.negative_scores,
                "positive_negative": self.positive_negative_similarity,
            },
        }

    def summary(self) -> str:
        """One line: pairs kept, median scores, near-duplicates and what the filters dropped."""
        filtered = sum(self.filtered.values())
        by_filter = ", ".join(f"{name} {count:,}" for name, count in self.filtered.items() if count)
        negative = self.negative_scores["quantiles"]["50"]
        positive = self.positive_scores["quantiles"]["50"]
        medians = (
            f"negatives score {negative:.2f} median vs positives {positive:.2f}"
            if negative is not None and positive is not None
            else "no negatives"
        )
        return (
            f"Mining: {self.pairs_kept:,} of {self.pairs:,} pairs kept, {medians}, "
            f"{self.near_duplicate_rate:.1%} near-duplicates of the positive (cosine > {NEAR_DUPLICATE_SIMILARITY}), "
            f"filters dropped {filtered:,} of {self.candidates:,} candidates"
            + (f" ({by_filter})" if by_filter else "")
            + f", {self.search} search"
            + (
                f"; given negatives: {self.given['used']:,} used, {self.given['mined_used']:,} mined added, "
                f"{self.given['dropped_positive']:,} dropped as a positive of the question and "
                f"{self.given['dropped_held_out']:,} as a held-out answer"
                if self.given is not None
                else ""
            )
        )


def library_excludes_query_text() -> bool:
    """Whether the installed mine_hard_negatives never takes a document whose text is the query itself as its
    negative, and searches one candidate more to make room for it (sentence-transformers 6.3 and newer).

    embedft follows the installed library's rule, so that its rows stay the library's rows (the parity test in
    tests/test_mining.py): sentence-transformers 6.2 searched ``range_max + max_positives`` candidates, 6.3 searches
    ``range_max + max_positives + 1``. With ``sampling_strategy: random`` that extra candidate changes which rows
    have enough valid candidates, and so the draws.
    """
    import sentence_transformers
    from packaging.version import Version

    return Version(sentence_transformers.__version__) >= Version("6.3.0.dev0")


def candidate_width(range_max: int, max_positives: int) -> int:
    """How many candidates the search retrieves per query, as the installed mine_hard_negatives does: ``range_max``
    plus room for the query's positives (and, from sentence-transformers 6.3 on, for the query's own text)."""
    return range_max + max_positives + (1 if library_excludes_query_text() else 0)


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
    query_documents: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply mine_hard_negatives' filters to one block of ranked candidates, exactly as the library does.

    The query's positives and padding are excluded, and so is the document whose text is the query itself
    (``query_documents``, -1 for none; pass it only where the installed library excludes it,
    :func:`library_excludes_query_text`); the absolute and relative margins compare with the query's
    lowest positive score; then max_score and min_score; the best ``range_max`` remain, the first ``range_min`` are
    skipped, and ``num_negatives`` are taken from the top or drawn with Python's ``random`` (one draw per query, in
    order, as the library draws them).

    Returns:
        Negative scores and corpus indices, ``[queries, num_negatives]``, best first; -inf marks a missing one.
    """
    import torch

    scores[indices == -1] = -float("inf")
    if query_documents is not None:
        scores[indices == torch.tensor(query_documents, dtype=indices.dtype).unsqueeze(1)] = -float("inf")
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
    keep_short: bool = False,
) -> MiningOutcome:
    """Mine negatives for every query of ``task`` against its whole corpus.

    Texts are encoded once through ``cache`` (documents with ``encode_document``, queries with ``encode_query``) and
    normalised; candidates come from an exact search, or an approximate one above ``options.exact_search_limit``
    documents (:func:`embedft.search.build_search`); then :func:`select_negatives` filters them. Queries are handled
    ``options.chunk_size`` at a time, so memory stays bounded; the result does not depend on the chunk size.

    With ``options.num_negatives > 1`` a (query, positive) pair keeps its rows only when all its negatives were
    found, as mine_hard_negatives' n-tuple format does. The outcome also counts the pairs left out and keeps the
    scores :meth:`MiningOutcome.diagnostics` summarises. ``keep_short`` keeps the rows of such pairs too (counted
    all the same), for given negatives to be filled up with them.
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
    outcome.range_max = range_max
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

    def document_rows(ids: np.ndarray) -> np.ndarray:
        return normalize(documents.gather([task.corpus[i] for i in ids.tolist()], document_keys[ids]))

    search = build_search(len(task.corpus), document_vectors, options.exact_search_limit, seed, len(task.queries))
    outcome.search = search.kind
    width = candidate_width(range_max, task.max_positives)
    excludes_query_text = library_excludes_query_text()
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
                task.query_documents[start:end] if excludes_query_text else None,
            )
            # One row per (query, positive, found negative), in the library's order: query, positive, negative.
            per_query = owners  # the chunk's query of each (query, positive) pair, in pair order
            found = torch.isfinite(negative_scores).numpy()[per_query]  # [pairs, num_negatives]
            negatives = negative_indices.numpy()[per_query]
            width_found = found.shape[1]
            found_count = found.sum(axis=1)
            outcome.pairs += len(per_query)
            outcome.pairs_without_negative += int((found_count == 0).sum())
            if options.num_negatives > 1:
                # n-tuple rows need every negative: like mine_hard_negatives, drop pairs that got fewer.
                short = (found_count > 0) & (found_count < options.num_negatives)
                outcome.pairs_too_few_negatives += int(short.sum())
                if not keep_short:
                    found &= (found_count == options.num_negatives)[:, None]
            block = np.stack(
                [
                    np.repeat(start + per_query, width_found),
                    np.repeat(np.asarray(flat, dtype=np.int64), width_found),
                    negatives.reshape(-1),
                ],
                axis=1,
            )
            kept = found.reshape(-1)
            outcome.rows.append(block[kept])
            outcome.positive_scores.append(flat_scores.numpy().astype(np.float32))
            outcome.negative_scores.append(negative_scores.numpy()[per_query].reshape(-1)[kept].astype(np.float32))
            pair_of_row = np.repeat(np.arange(len(per_query)), width_found)[kept]
            outcome.positive_negative.append(
                row_similarities(positive_vectors, pair_of_row, negatives.reshape(-1)[kept], document_rows)
            )
    finally:
        random.setstate(outer_state)
    return outcome


def row_similarities(
    positive_vectors: np.ndarray,
    pair_of_row: np.ndarray,
    negative_ids: np.ndarray,
    document_rows: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Cosine between each row's positive (``positive_vectors[pair_of_row]``, normalised) and its negative (corpus
    index ``negative_ids``), :data:`SIMILARITY_BLOCK` rows at a time, so a chunk's negatives are never all in
    memory as vectors at once."""
    similarities = np.empty(len(negative_ids), dtype=np.float32)
    for begin in range(0, len(negative_ids), SIMILARITY_BLOCK):
        end = min(begin + SIMILARITY_BLOCK, len(negative_ids))
        negative_vectors = document_rows(negative_ids[begin:end])
        similarities[begin:end] = np.einsum("ij,ij->i", positive_vectors[pair_of_row[begin:end]], negative_vectors)
    return similarities


def run_cache(cache: EmbeddingCache | None) -> tuple[EmbeddingCache, tempfile.TemporaryDirectory | None]:
    """``cache``, or a temporary one (removed by the caller) when none is given."""
    if cache is not None:
        return cache, None
    scratch = tempfile.TemporaryDirectory(prefix="embedft-embeddings-")
    return EmbeddingCache(scratch.name), scratch


def triplet_dataset(task: MiningTask, rows: np.ndarray, path: Path | None = None) -> Dataset:
    """The texts of mined rows, string-typed even when there are none.

    ``rows`` is ``[n, 3]`` (query, positive, negative indices: columns ``query``, ``answer``, ``negative``) or
    ``[n, 2 + k]`` with k > 1 negatives per row (columns ``query``, ``answer``, ``negative_1`` ... ``negative_k``,
    mine_hard_negatives' n-tuple format; :func:`ntuple_rows` makes them).

    With ``path`` the rows are streamed to that JSON-lines file (through a temporary file) and read back memory-mapped,
    so a million rows never sit in memory as Python strings and as an Arrow table at once.
    """
    texts = ((task.queries[q], task.corpus[p], *(task.corpus[n] for n in ns)) for q, p, *ns in rows.tolist())
    return rows_dataset(texts, rows.shape[1] - 2, path, empty=len(rows) == 0)


def rows_dataset(
    rows: Iterable[tuple[str, ...]], num_negatives: int, path: Path | None = None, empty: bool = False
) -> Dataset:
    """Training rows of texts, ``(query, answer, negative_1, ..., negative_k)`` each, as the Dataset the trainer
    reads: columns ``query``, ``answer`` and :func:`negative_columns`, string-typed even when there are none.

    With ``path`` the rows are streamed to that JSON-lines file (through a temporary file) and read back
    memory-mapped, like mined rows (``empty``: there are none, so they are saved from an empty Dataset).
    """
    import json
    import os

    from datasets import Dataset, Features, Value

    negatives = negative_columns(num_negatives)
    names = [QUERY, ANSWER, *negatives]
    features = Features({column: Value("string") for column in names})
    if path is None or empty:
        rows = list(rows)
        triplets = Dataset.from_dict(
            {name: [row[i] for row in rows] for i, name in enumerate(names)}, features=features
        )
        if path is not None:
            save_triplets(triplets, path)
        return triplets
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(dict(zip(names, row)), ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return load_triplets(path)


def ntuple_rows(rows: np.ndarray, num_negatives: int) -> np.ndarray:
    """Mined ``[n, 3]`` rows as training rows: unchanged for one negative, else one ``(query, positive, negative_1,
    ..., negative_k)`` row per pair, ``[n / k, 2 + k]`` (:func:`mine` leaves exactly k consecutive rows per pair)."""
    if num_negatives == 1:
        return rows
    if len(rows) % num_negatives:
        raise ValueError(f"{len(rows)} mined rows are not whole groups of {num_negatives} negatives")
    return np.concatenate([rows[::num_negatives, :2], rows[:, 2].reshape(-1, num_negatives)], axis=1)


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
    cache, scratch = run_cache(cache)
    try:
        outcome = mine(task, model, options, cache, seed, "training")
    finally:
        if scratch is not None:
            scratch.cleanup()
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


@dataclass
class GivenNegatives:
    """The negatives the data brought (flagembedding ``neg``, tevatron ``negative_passages``, a negative_column):
    each training pair's usable ones, in the data's order, and what was dropped on the way (for ``mining.json``)."""

    lists: list[list[str]]  # per training row: stripped, distinct, never a positive or a held-out answer
    read: int = 0  # distinct non-empty given negatives over all training pairs
    dropped_positive: int = 0  # a positive of the pair's own question (any of its answers in the data)
    dropped_held_out: int = 0  # an answer of a test or dev question (it would leak evaluation answers)

    @property
    def pairs_with_given(self) -> int:
        return sum(1 for negatives in self.lists if negatives)


def read_given_negatives(train: Dataset, known_pairs: Dataset, held_out_answers: set[str]) -> GivenNegatives:
    """Each training pair's given negatives that may be trained on, counting the others.

    A given negative is dropped when it is a positive of the pair's question (one of its answers anywhere in
    ``known_pairs`` or ``train``: pushing it away would teach the model the opposite of the data), or an answer of a
    held-out question (``held_out_answers``: training on it would leak the evaluation answers). Negatives are
    stripped; empty ones and repeats within a pair are skipped without counting.

    Args:
        train: training pairs with ``query``, ``answer`` and ``given_negatives``.
        known_pairs: every known pair (all of the data, the evaluation file too).
        held_out_answers: the answers of the test and dev questions.
    """
    from embedft.data import NEGATIVES, iter_pairs, iter_rows, text_digest

    train_queries = {text_digest(query) for query, _ in iter_pairs(train)}
    positives: dict[bytes, set[bytes]] = {}
    for pairs in (known_pairs, train):
        for query, answer in iter_pairs(pairs):
            key = text_digest(query)
            if key in train_queries:
                positives.setdefault(key, set()).add(text_digest(answer))
    held_out = {text_digest(answer) for answer in held_out_answers}
    given = GivenNegatives(lists=[])
    for query, negatives in iter_rows(train, QUERY, NEGATIVES):
        own = positives.get(text_digest(query), set())
        usable: list[str] = []
        for text in dict.fromkeys(text.strip() for text in negatives or [] if text and text.strip()):
            given.read += 1
            digest = text_digest(text)
            if digest in own:
                given.dropped_positive += 1
            elif digest in held_out:
                given.dropped_held_out += 1
            else:
                usable.append(text)
        given.lists.append(usable)
    return given


def choose_given(negatives: list[str], count: int, strategy: str, rng: random.Random) -> list[str]:
    """``count`` of a pair's given negatives: the first ones (``top``: the data's order, usually hardest first) or a
    seeded sample kept in the data's order (``random``); all of them when there are no more than ``count``."""
    if len(negatives) <= count:
        return negatives
    if strategy == "top":
        return negatives[:count]
    return [negatives[i] for i in sorted(rng.sample(range(len(negatives)), count))]


def given_negatives_training_set(
    train: Dataset,
    given: GivenNegatives,
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    path: Path | None = None,
) -> MinedTrainingSet:
    """Training rows from the data's own negatives, filled up with mined ones (``mining.given_negatives``).

    Each pair takes ``options.num_negatives`` of its given negatives (:func:`choose_given`). With ``use`` a pair
    that has fewer is left out and nothing is mined. With ``mix`` the questions that have a pair short of given
    negatives are mined (all their pairs, against the whole training pool: every training answer and
    ``extra_documents``, with the usual filters), and each short pair is filled up with its best mined negatives
    that are not already among its given ones; a pair still short is left out. The rows have the layout of mined
    ones: ``(query, answer, negative)``, or ``(query, answer, negative_1, ..., negative_k)``.

    Returns:
        The rows and the :class:`MiningDiagnostics`: pair counts over all training pairs, scores over the mined
        questions only, and the given-negative counts under ``given``.

    Raises:
        DataError: with ``use``, no pair has enough given negatives (there would be nothing to train on).
    """
    from embedft.data import iter_pairs
    from embedft.errors import DataError

    count = options.num_negatives
    rng = random.Random(seed)
    chosen = [choose_given(negatives, count, options.sampling_strategy, rng) for negatives in given.lists]
    outcome = MiningOutcome(search="none")
    mined: dict[tuple[str, str], list[str]] = {}
    pairs_mined = 0
    if options.given_negatives == "mix" and any(len(negatives) < count for negatives in chosen):
        queries = train[QUERY]
        short = {query for query, negatives in zip(queries, chosen) if len(negatives) < count}
        rows = [i for i, query in enumerate(queries) if query in short]
        subset = train.select(rows).select_columns([QUERY, ANSWER])
        pairs_mined = len(subset)
        others = train.select(sorted(set(range(len(train))) - set(rows)))[ANSWER] if len(rows) < len(train) else []
        task = MiningTask.from_dataset(subset, [*others, *(extra_documents or [])])
        cache, scratch = run_cache(cache)
        try:
            outcome = mine(task, model, options, cache, seed, "training", keep_short=True)
        finally:
            if scratch is not None:
                scratch.cleanup()
        log_outcome(outcome, options)
        for q, p, n in outcome.all_rows().tolist():
            mined.setdefault((task.queries[q], task.corpus[p]), []).append(task.corpus[n])
    texts: list[tuple[str, ...]] = []
    without = too_few = used = mined_used = 0
    for (query, answer), negatives in zip(iter_pairs(train), chosen):
        if len(negatives) < count:
            fill = [text for text in mined.get((query, answer), []) if text not in negatives]
            mined_used_here = min(len(fill), count - len(negatives))
            negatives = [*negatives, *fill[:mined_used_here]]
        else:
            mined_used_here = 0
        if len(negatives) < count:
            without += not negatives
            too_few += bool(negatives)
            continue
        used += count - mined_used_here
        mined_used += mined_used_here
        texts.append((query, answer, *negatives))
    if not texts and options.given_negatives == "use":
        raise DataError(
            f"no training pair has mining.num_negatives={count} given negatives (after dropping positives and "
            "held-out answers): lower mining.num_negatives or set mining.given_negatives: mix to mine the rest"
        )
    diagnostics = outcome.diagnostics(options)
    diagnostics.pairs = len(chosen)
    diagnostics.pairs_kept = len(texts)
    diagnostics.pairs_without_negative = without
    diagnostics.pairs_too_few_negatives = too_few
    diagnostics.given = {
        "mode": options.given_negatives,
        "pairs_with_given": given.pairs_with_given,
        "pairs_with_enough_given": sum(1 for negatives in chosen if len(negatives) == count),
        "pairs_mined": pairs_mined,
        "read": given.read,
        "dropped_positive": given.dropped_positive,
        "dropped_held_out": given.dropped_held_out,
        "used": used,
        "mined_used": mined_used,
    }
    if without or too_few:
        logger.warning(
            "%d of %d training pairs have fewer than mining.num_negatives=%d %s negatives and are left out%s",
            without + too_few,
            len(chosen),
            count,
            "given" if options.given_negatives == "use" else "given or mined",
            " (mining.given_negatives: mix fills them up by mining)" if options.given_negatives == "use" else "",
        )
    logger.info("%s", diagnostics.summary())
    return MinedTrainingSet(rows_dataset(texts, count, path, empty=not texts), diagnostics)


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
    """Read mined rows saved with ``Dataset.to_json(..., lines=True)`` or :func:`triplet_dataset`: triplets or
    n-tuples, their columns in training order (query, answer, then the negatives), which the loss reads them by."""
    from datasets import load_dataset

    triplets = load_dataset("json", data_files=str(path), split="train")
    if not {QUERY, ANSWER} <= set(triplets.column_names):
        return triplets
    order = [QUERY, ANSWER, *negative_columns_of(triplets)]
    return triplets if triplets.column_names == order else triplets.select_columns(order)
