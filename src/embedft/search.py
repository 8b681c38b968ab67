"""Nearest-neighbour search over normalised embeddings: exact below a pool size, approximate (faiss IVF) above.

Exact search multiplies a block of queries with the whole pool and keeps the top k per query, as
``mine_hard_negatives`` does; its memory is bounded by the block (at most :data:`EXACT_BLOCK_SCORES` scores at once),
its time grows with queries x pool. Above ``mining.exact_search_limit`` documents the pool goes into a faiss
``IndexIVFFlat`` (inner product, i.e. cosine on normalised vectors): the pool is clustered into about 4 sqrt(n) lists
and each query scans the :data:`IVF_PROBES` lists nearest to it, so its cost grows with the pool's square root.
Scores are exact inner products in both cases; only which candidates are found can differ.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

EXACT_BLOCK_SCORES = 1 << 25  # 32M float32 scores (128 MB) per query block
IVF_PROBES = 32  # lists each query scans
IVF_TRAINING_POINTS = 40  # training vectors per list (faiss warns below 39)
IVF_TRAINING_ITERATIONS = 10  # k-means rounds: a rough clustering is enough to route queries


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so inner product is cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class CandidateSearch(Protocol):
    kind: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def pad_candidates(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen to ``k`` columns with score -inf and index -1, as mine_hard_negatives pads a short pool."""
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, indices
    rows = scores.shape[0]
    return (
        np.concatenate([scores, np.full((rows, missing), -np.inf, dtype=np.float32)], axis=1),
        np.concatenate([indices, np.full((rows, missing), -1, dtype=np.int64)], axis=1),
    )


class ExactSearch:
    """Every query against every document, a block of queries at a time."""

    kind = "exact"

    def __init__(self, documents: np.ndarray) -> None:
        import torch

        self.documents = torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))

    def __len__(self) -> int:
        return self.documents.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents per query (scores descending), padded with -inf/-1 past the pool's size."""
        import torch

        queries_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        block = max(1, EXACT_BLOCK_SCORES // max(len(self), 1))
        top = min(k, len(self))
        scores, indices = [], []
        for start in range(0, len(queries_tensor), block):
            block_scores = queries_tensor[start : start + block] @ self.documents.T
            values, positions = torch.topk(block_scores, k=top, dim=1)
            scores.append(values.numpy())
            indices.append(positions.numpy().astype(np.int64))
        return pad_candidates(np.concatenate(scores), np.concatenate(indices), k)


class ApproximateSearch:
    """A faiss inverted-file index (IVF, flat vectors, inner product) filled a block at a time."""

    kind = "approximate"

    def __init__(self, dimension: int, size: int, seed: int, probes: int = IVF_PROBES) -> None:
        import faiss

        self.lists = max(1, min(round(4 * math.sqrt(size)), size // 39))
        self.quantizer = faiss.IndexFlatIP(dimension)
        self.index = faiss.IndexIVFFlat(self.quantizer, dimension, self.lists, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.cp.niter = IVF_TRAINING_ITERATIONS
        self.index.nprobe = min(probes, self.lists)

    def __len__(self) -> int:
        return self.index.ntotal

    def train(self, sample: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, documents: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(documents, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents found per query (scores descending), -inf/-1 where fewer were found."""
        scores, indices = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        scores = np.where(indices < 0, -np.inf, scores).astype(np.float32)
        return scores, indices.astype(np.int64)


def build_search(
    size: int,
    documents: Callable[[int, int], np.ndarray],
    exact_search_limit: int | None,
    seed: int,
    queries: int | None = None,
    block: int = 65_536,
) -> CandidateSearch:
    """An exact search over ``size`` documents, or an approximate one above ``exact_search_limit`` documents.

    Few queries against a large pool (fewer than 1% of its size, e.g. the held-out questions) are searched exactly
    even above the limit: building the index would cost more than the exact search.

    Args:
        size: number of documents.
        documents: ``documents(start, end)`` gives the normalised vectors of documents ``start..end-1``; the
            approximate index reads them a block at a time, so the whole pool is never in memory twice.
        exact_search_limit: the largest pool searched exactly (None: always exact; 0: always approximate).
        seed: seeds the approximate index's clustering and its training sample.
        queries: how many queries will be searched (None: unknown).
        block: documents read per call of ``documents``.
    """
    few_queries = exact_search_limit and queries is not None and queries < size // 100
    if exact_search_limit is None or size <= exact_search_limit or few_queries:
        if exact_search_limit is None:
            reason = "no mining.exact_search_limit"
        elif few_queries:
            reason = f"{queries:,} queries are too few for an index to pay off"
        else:
            reason = f"within mining.exact_search_limit={exact_search_limit:,}"
        logger.info("Exact candidate search over %d documents (%s)", size, reason)
        if size == 0:
            return ExactSearch(np.empty((0, 0), dtype=np.float32))
        first = documents(0, min(size, block))
        matrix = np.empty((size, first.shape[1]), dtype=np.float32)  # filled in place: never two copies
        matrix[: len(first)] = first
        for start, end in block_ranges(size, block):
            if start:
                matrix[start:end] = documents(start, end)
        return ExactSearch(matrix)
    first = documents(0, min(size, block))
    index = ApproximateSearch(first.shape[1], size, seed)
    rng = np.random.default_rng(seed)
    training_size = min(size, index.lists * IVF_TRAINING_POINTS)
    chosen = np.sort(rng.choice(size, size=training_size, replace=False))
    sample = np.concatenate(
        [
            documents(start, end)[chosen[(chosen >= start) & (chosen < end)] - start]
            for start, end in block_ranges(size, block)
        ]
    )
    logger.info(
        "Approximate candidate search (faiss IVF, %d lists, %d probed per query) over %d documents: the pool is "
        "larger than mining.exact_search_limit=%d",
        index.lists,
        index.index.nprobe,
        size,
        exact_search_limit,
    )
    index.train(sample)
    del sample
    for start, end in block_ranges(size, block):
        index.add(first if start == 0 else documents(start, end))
    return index


def block_ranges(size: int, block: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive blocks covering ``range(size)``."""
    for start in range(0, size, block):
        yield start, min(start + block, size)
