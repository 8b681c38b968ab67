"""Scoring a model: retrieval metrics over the whole answer pool, and triplet accuracy on mined triplets.

Both run through sentence-transformers' own evaluators (InformationRetrievalEvaluator, TripletEvaluator), before,
during and after training; their metric keys are renamed to the stable names used in metrics.json.

Retrieval (NDCG@10, MRR@10, accuracy@1) is the number to trust. Triplet accuracy compares each question's answer
with one negative that the mining model found hardest *before* training; with the base model as mining model, the
baseline is scored on that model's own worst cases, so its gain is overstated. It is kept, labelled as such.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedft.data import ANSWER, QUERY
from embedft.errors import ConfigError
from embedft.mining import NEGATIVE

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

    from embedft.config import RunConfig
    from embedft.data import PreparedData

logger = logging.getLogger(__name__)

TRIPLET = "triplet"
RETRIEVAL = "ir"
# The order people read them in: ranking quality first, triplet accuracy (biased, see above) last.
RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "accuracy@1", "recall@1", "recall@10", "recall@100", "map@100")
# "eval_ir_dim256_cosine_ndcg@10" (trainer) or "triplet_cosine_accuracy" (direct call): evaluator, metric.
RAW_METRIC = re.compile(
    r"^(?:eval_)?(?P<evaluator>[a-z0-9_]+?)_(?:cosine|dot|euclidean|manhattan|max)_(?P<metric>[a-z]+@?\d*)$"
)


@dataclass
class RetrievalTask:
    """Held-out questions, the document pool, and which documents answer which question (ids are strings)."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]


def build_retrieval_task(test: Dataset, all_pairs: Dataset, corpus: list[str]) -> RetrievalTask:
    """Every distinct evaluation question against ``corpus``; all answers given to the same question text, in
    any split, are relevant.

    Args:
        test: evaluation pairs.
        all_pairs: every known pair (to find the other answers of an evaluation question).
        corpus: the document pool; it must contain every answer.
    """
    doc_ids = {text: f"d{index}" for index, text in enumerate(corpus)}
    questions = list(dict.fromkeys(test[QUERY]))
    query_ids = {text: f"q{index}" for index, text in enumerate(questions)}
    relevant: dict[str, set[str]] = {query_ids[q]: set() for q in questions}
    for pairs in (test, all_pairs):
        for query, answer in zip(pairs[QUERY], pairs[ANSWER]):
            if query in query_ids and answer in doc_ids:
                relevant[query_ids[query]].add(doc_ids[answer])
    return RetrievalTask(
        queries={qid: text for text, qid in query_ids.items()},
        corpus={did: text for text, did in doc_ids.items()},
        relevant=relevant,
    )


def build_evaluator(
    triplets: Dataset,
    retrieval: RetrievalTask | None,
    batch_size: int,
    matryoshka_dims: list[int] | None = None,
    embedding_dimension: int | None = None,
) -> BaseEvaluator:
    """The evaluators run before, during and after training, in sequence.

    Args:
        triplets: evaluation (query, answer, negative) triplets for TripletEvaluator.
        retrieval: the retrieval task for InformationRetrievalEvaluator (None: triplets only).
        batch_size: encoding batch size.
        matryoshka_dims: also run retrieval with embeddings truncated to each of these sizes.
        embedding_dimension: the model's embedding size, to reject larger truncation sizes.

    Raises:
        ConfigError: a matryoshka size larger than the model's embeddings.
    """
    from sentence_transformers.base.evaluation.sequential import SequentialEvaluator
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
        TripletEvaluator,
    )

    evaluators: list[BaseEvaluator] = [
        TripletEvaluator(
            anchors=triplets[QUERY],
            positives=triplets[ANSWER],
            negatives=triplets[NEGATIVE],
            name=TRIPLET,
            batch_size=batch_size,
            write_csv=False,
        )
    ]
    if retrieval is not None:
        check_matryoshka_dims(matryoshka_dims or [], embedding_dimension)
        for dim in [None, *(matryoshka_dims or [])]:
            evaluators.append(
                InformationRetrievalEvaluator(
                    queries=retrieval.queries,
                    corpus=retrieval.corpus,
                    relevant_docs=retrieval.relevant,
                    mrr_at_k=[10],
                    ndcg_at_k=[10],
                    accuracy_at_k=[1],
                    precision_recall_at_k=[1, 10, 100],
                    map_at_k=[100],
                    batch_size=batch_size,
                    name=RETRIEVAL if dim is None else f"{RETRIEVAL}_dim{dim}",
                    truncate_dim=dim,
                    write_csv=False,
                )
            )
    return SequentialEvaluator(evaluators)


def check_matryoshka_dims(dims: list[int], embedding_dimension: int | None) -> None:
    """Raise a ConfigError for a truncation size the model cannot give (None: size unknown, nothing to check)."""
    for dim in dims:
        if embedding_dimension is not None and dim > embedding_dimension:
            raise ConfigError(
                f"'evaluation.matryoshka_dims' has {dim}, larger than the model's {embedding_dimension} dimensions"
            )


def evaluator_for(
    config: RunConfig, data: PreparedData, triplets: Dataset, embedding_dimension: int | None, split: str = "test"
) -> BaseEvaluator:
    """The run's evaluator as the ``evaluation:`` section configures it, on one held-out split (``test``, or
    ``dev`` for evaluation during training)."""
    retrieval = (
        build_retrieval_task(data.splits[split], data.all_pairs, data.corpus)
        if config.evaluation.information_retrieval
        else None
    )
    return build_evaluator(
        triplets, retrieval, config.evaluation.batch_size, config.evaluation.matryoshka_dims, embedding_dimension
    )


def standard_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Rename sentence-transformers' metric keys to the names in metrics.json: ``ndcg@10``, ``mrr@10``,
    ``accuracy@1`` (hit@1), ``recall@1``/``@10``/``@100``, ``map@100``, ``ndcg@10_dim256`` for truncated
    embeddings, and ``triplet_accuracy``; retrieval metrics first, triplet accuracy last."""
    retrieval: dict[str, float] = {}
    truncated: dict[str, float] = {}
    triplet: dict[str, float] = {}
    for key, value in raw.items():
        match = RAW_METRIC.match(key)
        if match is None:
            continue
        evaluator, metric = match.group("evaluator"), match.group("metric")
        if evaluator == TRIPLET and metric == "accuracy":
            triplet["triplet_accuracy"] = float(value)
        elif evaluator == RETRIEVAL and metric in RETRIEVAL_METRICS:
            retrieval[metric] = float(value)
        elif evaluator.startswith(f"{RETRIEVAL}_dim") and metric in RETRIEVAL_METRICS:
            truncated[f"{metric}_{evaluator.removeprefix(RETRIEVAL + '_')}"] = float(value)
    ordered = {name: retrieval[name] for name in RETRIEVAL_METRICS if name in retrieval}
    rank = {name: index for index, name in enumerate(RETRIEVAL_METRICS)}

    def size_then_metric(key: str) -> tuple[int, int]:
        metric, _, size = key.rpartition("_dim")
        return -int(size), rank[metric]

    truncated = {key: truncated[key] for key in sorted(truncated, key=size_then_metric)}
    return {**ordered, **truncated, **triplet}


def evaluate(model: SentenceTransformer, evaluator: BaseEvaluator) -> dict[str, float]:
    """Run ``evaluator`` on ``model`` and return the metrics under their standard names."""
    return standard_metrics(evaluator(model))


def pair_similarities(
    model: SentenceTransformer, triplets: Dataset, sample: int, batch_size: int
) -> dict[str, list[float]]:
    """Query-positive and query-negative similarities of the first ``sample`` triplets, for the report's
    histograms (queries through ``encode_query``, answers through ``encode_document``)."""
    rows = triplets.select(range(min(sample, len(triplets))))
    if len(rows) == 0:
        return {"positive": [], "negative": []}
    queries = model.encode_query(rows[QUERY], batch_size=batch_size, convert_to_tensor=True)
    positives = model.encode_document(rows[ANSWER], batch_size=batch_size, convert_to_tensor=True)
    negatives = model.encode_document(rows[NEGATIVE], batch_size=batch_size, convert_to_tensor=True)
    return {
        "positive": model.similarity_pairwise(queries, positives).tolist(),
        "negative": model.similarity_pairwise(queries, negatives).tolist(),
    }
