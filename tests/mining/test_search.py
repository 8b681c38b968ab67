"""Candidate search: exact search over blocks equals one product, and the approximate index finds the exact
neighbours on clustered data; a small pool is searched exactly even above the limit when queries are few."""

from __future__ import annotations

import numpy as np
import torch

from embedft.mining.search import (
    EXACT_BLOCK_SCORES,
    EXACT_QUERY_BLOCK,
    ApproximateSearch,
    ExactSearch,
    build_search,
    normalize,
    pad_candidates,
)


def test_approximate_search_finds_the_exact_neighbours_on_clustered_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    documents = normalize(centres[rng.integers(0, 40, 8000)] + 0.3 * rng.normal(size=(8000, 32)))
    queries = normalize(centres[rng.integers(0, 40, 200)] + 0.3 * rng.normal(size=(200, 32)))
    exact_scores, exact = ExactSearch(documents).search(queries, 20)
    index = ApproximateSearch(32, len(documents), seed=0)
    index.train(documents)
    index.add(documents)
    approximate_scores, approximate = index.search(queries, 20)
    recall = np.mean([len(set(a) & set(e)) / 20 for a, e in zip(approximate, exact)])
    assert recall >= 0.95
    # Scores are exact inner products either way.
    same = exact == approximate
    assert np.allclose(exact_scores[same], approximate_scores[same], atol=1e-5)


def test_exact_search_over_document_blocks_matches_one_product():
    rng = np.random.default_rng(1)
    pool = 2 * EXACT_BLOCK_SCORES // EXACT_QUERY_BLOCK + 123  # three document blocks
    documents = normalize(rng.normal(size=(pool, 8)))
    queries = normalize(rng.normal(size=(EXACT_QUERY_BLOCK + 5, 8)))  # two query blocks
    scores, indices = ExactSearch(documents).search(queries, 30)
    expected_scores, expected_indices = torch.topk(torch.from_numpy(queries) @ torch.from_numpy(documents).T, 30)
    assert np.allclose(scores, expected_scores.numpy(), atol=1e-6)
    assert (indices == expected_indices.numpy()).mean() > 0.99  # equal scores may swap places across blocks
    assert indices.max() >= 2 * EXACT_BLOCK_SCORES // EXACT_QUERY_BLOCK  # the last block was searched


def test_a_short_pool_is_padded_as_mine_hard_negatives_pads_it():
    documents = normalize(np.eye(3, 4, dtype=np.float32))
    scores, indices = ExactSearch(documents).search(documents[:1], 5)
    assert indices[0, 0] == 0 and sorted(indices[0, :3].tolist()) == [0, 1, 2]
    assert indices[0, 3:].tolist() == [-1, -1] and np.isinf(scores[0, 3:]).all()
    padded_scores, padded = pad_candidates(scores[:, :2], indices[:, :2], 4)
    assert padded.shape == (1, 4) and padded[0, 2:].tolist() == [-1, -1]


def test_few_queries_are_searched_exactly_above_the_limit():
    documents = normalize(np.random.default_rng(0).normal(size=(500, 8)))
    search = build_search(len(documents), lambda start, end: documents[start:end], 10, seed=0, queries=2)
    assert search.kind == "exact"
    assert build_search(len(documents), lambda start, end: documents[start:end], 10, seed=0).kind == "approximate"
