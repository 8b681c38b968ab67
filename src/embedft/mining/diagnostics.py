"""What mining did, in numbers: the rows and scores of one mining call, and the run's ``mining.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from embedft.config.schema import MiningConfig

if TYPE_CHECKING:
    from collections.abc import Callable


logger = logging.getLogger(__name__)

# A mined negative this close to the row's positive (cosine under the mining model) is most likely the query's own
# answer in other words: a false negative that trains the model to push the right answer away.
NEAR_DUPLICATE_SIMILARITY = 0.95

SCORE_QUANTILES = (5, 25, 50, 75, 95)  # percentiles of each score distribution in mining.json

# Fixed histogram bins over the whole cosine range, so runs and models compare bin by bin.
HISTOGRAM_EDGES = tuple(round(-1.0 + 0.025 * i, 3) for i in range(81))

SIMILARITY_BLOCK = 16_384  # negatives whose vectors are gathered at once for the positive-negative similarity


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

    def unmined_pairs(self) -> np.ndarray:
        """The (query, positive) pairs ``mining.unmined_pairs: in_batch`` keeps without negatives, ``[n, 2]``."""
        return np.concatenate(self.unmined) if self.unmined else np.empty((0, 2), dtype=np.int64)

    rows: list[np.ndarray] = field(default_factory=list)  # [n, 3] blocks of (query, positive, negative) indices
    candidates: int = 0  # candidates ranked, the query's own positives excluded
    skipped: dict[str, int] = field(default_factory=dict)  # candidates each filter removed
    search: str = "exact"
    range_max: int | None = None  # the range_max used (derived when mining.range_max is null)
    pairs: int = 0  # (query, positive) pairs searched
    pairs_without_negative: int = 0  # pairs no candidate passed the filters for: no rows
    pairs_too_few_negatives: int = 0  # some negatives, fewer than num_negatives (> 1): no rows (n-tuple rule)
    # mining.unmined_pairs: in_batch keeps such pairs as [n, 2] blocks of (query, positive) indices; random_negative
    # fills their gaps with random pool documents (how many, and for how many pairs).
    unmined: list[np.ndarray] = field(default_factory=list)
    random_negatives: int = 0
    pairs_random_negatives: int = 0
    # Per chunk, float32: each pair's query-positive score; each row's query-negative score; and each row's cosine
    # between its positive and its negative (both pool documents).
    positive_scores: list[np.ndarray] = field(default_factory=list)
    negative_scores: list[np.ndarray] = field(default_factory=list)
    positive_negative: list[np.ndarray] = field(default_factory=list)

    def diagnostics(self, options: MiningConfig) -> MiningDiagnostics:
        """What this mining did, in numbers (see :class:`MiningDiagnostics`)."""
        similarities = joined(self.positive_negative)
        unmined = sum(len(block) for block in self.unmined)
        short = self.pairs_without_negative + self.pairs_too_few_negatives
        return MiningDiagnostics(
            search=self.search,
            num_negatives=options.num_negatives,
            pairs=self.pairs,
            pairs_kept=self.pairs - short + min(self.pairs_random_negatives, short),
            unmined_pairs=options.unmined_pairs,
            pairs_in_batch=unmined,
            pairs_random_negatives=self.pairs_random_negatives,
            random_negatives=self.random_negatives,
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
    pairs_kept: int  # pairs that became rows with negatives (random ones included)
    pairs_without_negative: int  # no candidate passed the filters
    pairs_too_few_negatives: int  # fewer than num_negatives (> 1) passed
    candidates: int  # candidates ranked, the query's own positives excluded
    filtered: dict[str, int]  # candidates each filter removed, in the order they were applied
    negatives: int  # negatives kept (training rows x num_negatives)
    near_duplicates: int  # kept negatives whose cosine with the row's positive is above NEAR_DUPLICATE_SIMILARITY
    positive_scores: dict[str, Any]  # score_summary of the query-positive scores
    negative_scores: dict[str, Any]  # score_summary of the query-negative scores
    positive_negative_similarity: dict[str, Any]  # score_summary of each kept negative's cosine with its positive
    options: dict[str, Any] = field(default_factory=dict)  # the mining filters in force
    # What became of the pairs short of negatives (mining.unmined_pairs): kept as (query, answer) pairs, or filled
    # with random negatives (pairs, and negatives drawn); the rest were left out.
    unmined_pairs: str = "drop"
    pairs_in_batch: int = 0
    pairs_random_negatives: int = 0
    random_negatives: int = 0
    given: dict[str, Any] | None = None  # GivenNegatives.to_dict() when the data's own negatives were read

    @property
    def pairs_left_out(self) -> int:
        """Pairs that train in no form: short of negatives and neither kept as pairs nor filled."""
        return self.pairs - self.pairs_kept - self.pairs_in_batch

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
                "unmined_pairs": self.unmined_pairs,
                "kept_in_batch": self.pairs_in_batch,
                "kept_with_random_negatives": self.pairs_random_negatives,
                "left_out": self.pairs_left_out,
            },
            "random_negatives": self.random_negatives,
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
