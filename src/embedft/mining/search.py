"""Nearest-neighbour search over normalised embeddings: exact below a pool size, approximate (faiss) above.

Exact search multiplies a block of queries with the pool, a block of documents at a time, and keeps the top k per
query, as ``mine_hard_negatives`` does; its memory is bounded by the block (at most :data:`EXACT_BLOCK_SCORES`
scores at once), its time grows with queries x pool. Above ``mining.exact_search_limit`` documents the pool goes into
a faiss inverted file with 4-bit product-quantised codes scanned by SIMD ("fast scan") and exact re-scoring
(``IVF{lists},PQ{d/2}x4fs,RFlat``): each query scans the :data:`IVF_PROBES` lists nearest to it in the coarse codes,
keeps ``k x`` :data:`REFINE_FACTOR` candidates and re-scores them with the full vectors. The coarse codes are cheap
enough to probe a large share of the lists, which is what recall needs on embeddings whose similarities are flat (a
static miner's are). Scores are exact inner products in both cases; only which candidates are found can differ.

"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)


EXACT_BLOCK_SCORES = 1 << 25  # 32M float32 scores (128 MB) per block

EXACT_QUERY_BLOCK = 1024  # queries per block: enough rows for the matrix product to run at full speed

IVF_PROBES = 256  # lists each query scans: 40% of a 100K pool's lists, 13% of a 1M pool's (docs/benchmarks.md)

REFINE_FACTOR = 16  # candidates kept from the coarse codes per wanted neighbour, then re-scored exactly

APPROXIMATE_QUERY_BLOCK = 16_384  # queries per faiss call: bounds its candidate buffers (~320 MB at k=101)

IVF_TRAINING_POINTS = 64  # training vectors per list (faiss warns below 39)

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
    """Every query against every document, a block of queries and documents at a time.

    Written here rather than taken from the libraries: mine_hard_negatives' exact path ranks with ``torch.topk`` over
    the query-document products, and this does the same a block at a time, so its candidates and their order equal
    the library's (the parity test). ``faiss.IndexFlatIP`` computes the products with its own kernels (another
    rounding, another order of equal scores), and ``sentence_transformers.util.semantic_search`` returns a Python
    dict per hit, too slow for the 101 candidates of a million queries.
    """

    kind = "exact"

    def __init__(self, documents: np.ndarray) -> None:
        import torch

        self.documents = torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))

    def __len__(self) -> int:
        return self.documents.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents per query (scores descending), padded with -inf/-1 past the pool's size.

        A pool of up to ``EXACT_BLOCK_SCORES / EXACT_QUERY_BLOCK`` (32K) documents is scored whole, as
        mine_hard_negatives does. A larger one is scored a block of documents at a time and the top ``k`` kept across
        blocks, so the pool is read once per :data:`EXACT_QUERY_BLOCK` queries, not once per handful of queries.
        """
        import torch

        queries_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        document_block = max(k, EXACT_BLOCK_SCORES // EXACT_QUERY_BLOCK)
        top = min(k, len(self))
        if top == 0 or len(queries_tensor) == 0:
            rows = len(queries_tensor)
            return pad_candidates(np.empty((rows, 0), dtype=np.float32), np.empty((rows, 0), dtype=np.int64), k)
        scores, indices = [], []
        for start in range(0, len(queries_tensor), EXACT_QUERY_BLOCK):
            query_rows = queries_tensor[start : start + EXACT_QUERY_BLOCK]
            best_values = best_positions = None
            for document_start in range(0, len(self), document_block):
                block_scores = query_rows @ self.documents[document_start : document_start + document_block].T
                values, positions = torch.topk(block_scores, k=min(top, block_scores.shape[1]), dim=1)
                positions += document_start
                if best_values is not None:
                    values, order = torch.topk(torch.cat([best_values, values], dim=1), k=top, dim=1)
                    positions = torch.gather(torch.cat([best_positions, positions], dim=1), 1, order)
                best_values, best_positions = values, positions
            scores.append(best_values.numpy())
            indices.append(best_positions.numpy().astype(np.int64))
        return pad_candidates(np.concatenate(scores), np.concatenate(indices), k)


class ApproximateSearch:
    """A faiss inverted file of 4-bit product-quantised codes with exact re-scoring, filled a block at a time."""

    kind = "approximate"

    def __init__(self, dimension: int, size: int, seed: int, probes: int = IVF_PROBES) -> None:
        import faiss

        self.lists = max(1, min(round(2 * math.sqrt(size)), size // 39))
        # Two dimensions per 4-bit sub-quantiser: a 256-d static miner's vector becomes 64 bytes of coarse code.
        subquantizers = dimension // 2 if dimension % 2 == 0 else dimension
        self.index = faiss.index_factory(
            dimension, f"IVF{self.lists},PQ{subquantizers}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT
        )
        self.inverted_file = faiss.extract_index_ivf(self.index)
        self.inverted_file.cp.seed = seed
        self.inverted_file.cp.niter = IVF_TRAINING_ITERATIONS
        self.inverted_file.nprobe = min(probes, self.lists)
        faiss.downcast_index(self.index).k_factor = REFINE_FACTOR

    @property
    def probes(self) -> int:
        return self.inverted_file.nprobe

    def __len__(self) -> int:
        return self.index.ntotal

    def train(self, sample: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, documents: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(documents, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents found per query (scores descending), -inf/-1 where fewer were found.

        Queries go to faiss :data:`APPROXIMATE_QUERY_BLOCK` at a time: it holds ``k x REFINE_FACTOR`` candidates
        per query before re-scoring (12 bytes each), 8 GB for a chunk of 200,000 queries at k=101.
        """
        scores = np.empty((len(queries), k), dtype=np.float32)
        indices = np.empty((len(queries), k), dtype=np.int64)
        for start, end in block_ranges(len(queries), APPROXIMATE_QUERY_BLOCK):
            block = np.ascontiguousarray(queries[start:end], dtype=np.float32)
            scores[start:end], indices[start:end] = self.index.search(block, k)
        scores[indices < 0] = -np.inf
        return scores, indices


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
        "Approximate candidate search (faiss IVF-PQ fast scan, %d lists, %d probed per query, %d candidates re-scored "
        "per neighbour) over %d documents: the pool is larger than mining.exact_search_limit=%d",
        index.lists,
        index.probes,
        REFINE_FACTOR,
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
