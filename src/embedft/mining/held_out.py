"""One hardest negative per held-out pair, for triplet accuracy and the bounded pool of the step scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY
from embedft.config.schema import MiningConfig
from embedft.mining.engine import mine
from embedft.mining.rows import triplet_dataset
from embedft.mining.task import MiningTask
from embedft.models.embedding_cache import EmbeddingCache, cache_or_scratch

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer


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
    with cache_or_scratch(cache) as cache:
        outcome = mine(task, model, options, cache, seed=0, description="evaluation")
    wanted = set(zip(test[QUERY], test[ANSWER]))
    triplets = triplet_dataset(task, outcome.all_rows())
    keep = [i for i, pair in enumerate(zip(triplets[QUERY], triplets[ANSWER])) if pair in wanted]
    return triplets.select(keep)
