"""What one evaluator scores, as the ``evaluation:`` section configures it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedft.columns import ANSWER, NEGATIVE, QUERY
from embedft.config.schema import RunConfig
from embedft.data.prepared import PreparedData
from embedft.evaluation.evaluators import build_evaluator
from embedft.evaluation.metrics import RETRIEVAL, RETRIEVAL_STEPS
from embedft.evaluation.retrieval import RetrievalTask, bounded_retrieval_task, build_retrieval_task, seeded_sample
from embedft.models.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer


@dataclass
class EvaluationSet:
    """What one evaluator scores: the questions of one split (as triplets and as a retrieval task) and the pool."""

    split: str
    triplets: Dataset
    retrieval: RetrievalTask | None
    during_training: bool = False
    bounded: bool = False  # max_pool / max_queries left out questions or documents

    def record(self) -> dict[str, Any]:
        """The split, pool ('whole' or 'bounded'), questions and documents, as ``metrics.json`` ``evaluation``
        records them (documents: None without retrieval evaluation)."""
        questions = len(self.retrieval.queries) if self.retrieval is not None else len(set(self.triplets[QUERY]))
        documents = len(self.retrieval.corpus) if self.retrieval is not None else None
        record: dict[str, Any] = {
            "split": self.split,
            "pool": "bounded" if self.bounded else "whole",
            "questions": questions,
            "documents": documents,
        }
        if self.retrieval is not None:
            record["relevance"] = "graded" if self.retrieval.graded else "binary"
            record |= {f"questions_{group}": len(ids) for group, ids in self.retrieval.answer_groups().items()}
        return record


def evaluation_set(
    config: RunConfig, data: PreparedData, triplets: Dataset, split: str = "test", during_training: bool = False
) -> EvaluationSet:
    """The questions and pool of one held-out split as the ``evaluation:`` section configures them.

    Baseline and final (``during_training=False``) take every question against the whole pool, unless
    ``evaluation.final_pool`` is ``bounded``. Evaluation during training takes at most ``evaluation.max_queries``
    questions (and only their triplets) against the pool bounded by ``evaluation.max_pool`` (see
    :func:`bounded_retrieval_task`), both seeded with the run's seed.
    """
    evaluation = config.evaluation
    retrieval = (
        build_retrieval_task(data.splits[split], data.corpus, data.trained_answers)
        if evaluation.information_retrieval
        else None
    )
    if not during_training and evaluation.final_pool == "whole":
        return EvaluationSet(split, triplets, retrieval)
    if retrieval is not None:
        hard_negatives = zip(triplets[QUERY], triplets[NEGATIVE])
        whole = retrieval
        retrieval = bounded_retrieval_task(
            retrieval, hard_negatives, evaluation.max_pool, evaluation.max_queries, config.seed
        )
        questions = set(retrieval.queries.values())
        bounded = retrieval is not whole
    else:
        questions = set(
            seeded_sample(list(dict.fromkeys(triplets[QUERY])), evaluation.max_queries, random.Random(config.seed))
        )
        bounded = len(questions) < len(set(triplets[QUERY]))
    if len(questions) < len(set(triplets[QUERY])):
        triplets = triplets.select([index for index, query in enumerate(triplets[QUERY]) if query in questions])
    return EvaluationSet(split, triplets, retrieval, during_training=during_training, bounded=bounded)


def evaluator_for_set(
    config: RunConfig,
    scored: EvaluationSet,
    embedding_dimension: int | None,
    cache: EmbeddingCache | None = None,
) -> BaseEvaluator:
    """The evaluator of ``scored``; during training its retrieval keys start with ``ir_steps``, not ``ir``.
    ``cache`` keeps the pool's embeddings (baseline and final; see :class:`SharedPool`)."""
    return build_evaluator(
        scored.triplets,
        scored.retrieval,
        config.evaluation.batch_size,
        config.evaluation.matryoshka_dims,
        embedding_dimension,
        retrieval_name=RETRIEVAL_STEPS if scored.during_training else RETRIEVAL,
        cache=cache,
    )


def evaluator_for(
    config: RunConfig,
    data: PreparedData,
    triplets: Dataset,
    embedding_dimension: int | None,
    split: str = "test",
    during_training: bool = False,
    cache: EmbeddingCache | None = None,
) -> BaseEvaluator:
    """The run's evaluator as the ``evaluation:`` section configures it, on one held-out split: the whole pool and
    every question (baseline, final, ``eval_embed.py``), or with ``during_training`` the bounded pool and questions
    of :func:`evaluation_set`."""
    return evaluator_for_set(
        config, evaluation_set(config, data, triplets, split, during_training), embedding_dimension, cache
    )


def pair_similarities(
    model: SentenceTransformer,
    triplets: Dataset,
    sample: int,
    batch_size: int,
    cache: EmbeddingCache | None = None,
) -> dict[str, list[float]]:
    """Query-positive and query-negative similarities of the first ``sample`` triplets, for the report's
    histograms (queries through ``encode_query``, answers through ``encode_document``; with ``cache``, the
    answers' embeddings come from it, where the evaluation of the pool left them)."""
    import torch

    rows = triplets.select(range(min(sample, len(triplets))))
    if len(rows) == 0:
        return {"positive": [], "negative": []}
    queries = model.encode_query(rows[QUERY], batch_size=batch_size, convert_to_tensor=True)
    if cache is not None:
        encoded = [
            torch.from_numpy(cache.embeddings(model, rows[column], "document", batch_size, "Reading the answers"))
            for column in (ANSWER, NEGATIVE)
        ]
        positives, negatives = (tensor.to(queries.device) for tensor in encoded)
    else:
        positives = model.encode_document(rows[ANSWER], batch_size=batch_size, convert_to_tensor=True)
        negatives = model.encode_document(rows[NEGATIVE], batch_size=batch_size, convert_to_tensor=True)
    return {
        "positive": model.similarity_pairwise(queries, positives).tolist(),
        "negative": model.similarity_pairwise(queries, negatives).tolist(),
    }
