"""Scoring a model: retrieval metrics over the answer pool, and triplet accuracy on mined triplets.

Both run through sentence-transformers' own evaluators (InformationRetrievalEvaluator, TripletEvaluator), before,
during and after training; their metric keys are renamed to the stable names used in metrics.json.

Baseline and final rank the whole pool with every test question. Evaluation during training stays cheap on large
data: it ranks a bounded pool (every positive of its questions, their mined hard negatives and a seeded sample of the
rest, up to ``evaluation.max_pool``, as NanoBEIR does) for at most ``evaluation.max_queries`` questions. Its retrieval
evaluator is named ``ir_steps`` instead of ``ir``, so its TensorBoard tags and trainer log keys
(``eval/ir_steps_cosine_ndcg@10``) never read like the whole-pool numbers.

Retrieval (NDCG@10, MRR@10, accuracy@1) is the number to trust. Triplet accuracy compares each question's answer
with one negative that the mining model found hardest *before* training; with the base model as mining model, the
baseline is scored on that model's own worst cases, so its gain is overstated. It is kept, labelled as such.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
RETRIEVAL_STEPS = "ir_steps"  # the bounded pool scored during training
# The order people read them in: ranking quality first, triplet accuracy (biased, see above) last.
RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "accuracy@1", "recall@1", "recall@10", "recall@100", "map@100")
# "eval_ir_dim256_cosine_ndcg@10" (trainer) or "triplet_cosine_accuracy" (direct call): evaluator, metric.
# The evaluator is "triplet", "ir", "ir_steps", "ir_dim256" or "ir_steps_dim256".
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


def seeded_sample(items: list[str], size: int | None, rng: random.Random) -> list[str]:
    """At most ``size`` of ``items`` drawn with ``rng``, in their original order (None: all of them)."""
    if size is None or len(items) <= size:
        return items
    chosen = set(rng.sample(items, size))
    return [item for item in items if item in chosen]


def bounded_retrieval_task(
    task: RetrievalTask,
    hard_negatives: Iterable[tuple[str, str]],
    max_pool: int | None,
    max_queries: int | None,
    seed: int,
) -> RetrievalTask:
    """A cheaper version of ``task`` for evaluation during training (the NanoBEIR recipe).

    First at most ``max_queries`` questions are kept (a seeded sample). The pool then holds every relevant document
    of the kept questions, their mined hard negatives, and a seeded random sample of the other documents, up to
    ``max_pool`` documents in all. When the positives and negatives alone exceed ``max_pool`` they are all kept (and
    a warning says so): a pool without them would not measure ranking. Document and question ids are those of
    ``task``, so a bounded pool is a subset of the whole one.

    Args:
        task: the whole-pool task (from :func:`build_retrieval_task`).
        hard_negatives: ``(question text, negative text)`` pairs, e.g. ``zip(triplets["query"],
            triplets["negative"])`` of the evaluation triplets; the negatives of questions not kept are ignored.
        max_pool: most documents to rank (None: the whole pool).
        max_queries: most questions to score (None: all).
        seed: seed of both samples: the same seed gives the same pool.

    Returns:
        ``task`` itself when nothing needs bounding, otherwise a new task.
    """
    rng = random.Random(seed)
    kept_queries = seeded_sample(list(task.queries), max_queries, rng)
    if len(kept_queries) == len(task.queries) and (max_pool is None or len(task.corpus) <= max_pool):
        return task
    doc_ids = {text: did for did, text in task.corpus.items()}
    kept_texts = {task.queries[qid] for qid in kept_queries}
    positives = {did for qid in kept_queries for did in task.relevant[qid]}
    negatives = {
        doc_ids[negative]
        for query, negative in hard_negatives
        if query in kept_texts and negative in doc_ids and doc_ids[negative] not in positives
    }
    if max_pool is None or len(task.corpus) <= max_pool:
        kept_docs = set(task.corpus)
    else:
        needed = positives | negatives
        if len(needed) > max_pool:
            logger.warning(
                "Evaluation during training: the %d positives and %d mined negatives of its %d questions exceed "
                "evaluation.max_pool=%d; all of them are ranked (lower evaluation.max_queries to bound it)",
                len(positives),
                len(negatives),
                len(kept_queries),
                max_pool,
            )
        rest = [did for did in task.corpus if did not in needed]
        kept_docs = needed | set(seeded_sample(rest, max(max_pool - len(needed), 0), rng))
    logger.info(
        "Evaluation during training: %d of %d questions rank %d of %d documents (%d positives, %d mined negatives, "
        "the rest a seeded sample)",
        len(kept_queries),
        len(task.queries),
        len(kept_docs),
        len(task.corpus),
        len(positives),
        len(negatives),
    )
    return RetrievalTask(
        queries={qid: task.queries[qid] for qid in kept_queries},
        corpus={did: text for did, text in task.corpus.items() if did in kept_docs},
        relevant={qid: set(task.relevant[qid]) for qid in kept_queries},
    )


def build_evaluator(
    triplets: Dataset,
    retrieval: RetrievalTask | None,
    batch_size: int,
    matryoshka_dims: list[int] | None = None,
    embedding_dimension: int | None = None,
    retrieval_name: str = RETRIEVAL,
) -> BaseEvaluator:
    """The evaluators run before, during and after training, in sequence.

    Args:
        triplets: evaluation (query, answer, negative) triplets for TripletEvaluator.
        retrieval: the retrieval task for InformationRetrievalEvaluator (None: triplets only).
        batch_size: encoding batch size.
        matryoshka_dims: also run retrieval with embeddings truncated to each of these sizes.
        embedding_dimension: the model's embedding size, to reject larger truncation sizes.
        retrieval_name: the retrieval evaluator's name, the start of its metric keys: ``ir`` for the whole pool,
            ``ir_steps`` for the bounded pool scored during training.

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
                    name=retrieval_name if dim is None else f"{retrieval_name}_dim{dim}",
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


@dataclass
class EvaluationSet:
    """What one evaluator scores: the questions of one split (as triplets and as a retrieval task) and the pool."""

    split: str
    triplets: Dataset
    retrieval: RetrievalTask | None
    during_training: bool = False

    def record(self) -> dict[str, Any]:
        """The split, questions and documents, as ``metrics.json`` ``evaluation`` records them (documents: None
        without retrieval evaluation)."""
        questions = len(self.retrieval.queries) if self.retrieval is not None else len(set(self.triplets[QUERY]))
        documents = len(self.retrieval.corpus) if self.retrieval is not None else None
        return {"split": self.split, "questions": questions, "documents": documents}


def evaluation_set(
    config: RunConfig, data: PreparedData, triplets: Dataset, split: str = "test", during_training: bool = False
) -> EvaluationSet:
    """The questions and pool of one held-out split as the ``evaluation:`` section configures them.

    Baseline and final (``during_training=False``) take every question against the whole pool. Evaluation during
    training takes at most ``evaluation.max_queries`` questions (and only their triplets) against the pool bounded by
    ``evaluation.max_pool`` (see :func:`bounded_retrieval_task`), both seeded with the run's seed.
    """
    evaluation = config.evaluation
    retrieval = (
        build_retrieval_task(data.splits[split], data.all_pairs, data.corpus)
        if evaluation.information_retrieval
        else None
    )
    if not during_training:
        return EvaluationSet(split, triplets, retrieval)
    if retrieval is not None:
        hard_negatives = zip(triplets[QUERY], triplets[NEGATIVE])
        retrieval = bounded_retrieval_task(
            retrieval, hard_negatives, evaluation.max_pool, evaluation.max_queries, config.seed
        )
        questions = set(retrieval.queries.values())
    else:
        questions = set(
            seeded_sample(list(dict.fromkeys(triplets[QUERY])), evaluation.max_queries, random.Random(config.seed))
        )
    if len(questions) < len(set(triplets[QUERY])):
        triplets = triplets.select([index for index, query in enumerate(triplets[QUERY]) if query in questions])
    return EvaluationSet(split, triplets, retrieval, during_training=True)


def evaluator_for_set(config: RunConfig, scored: EvaluationSet, embedding_dimension: int | None) -> BaseEvaluator:
    """The evaluator of ``scored``; during training its retrieval keys start with ``ir_steps``, not ``ir``."""
    return build_evaluator(
        scored.triplets,
        scored.retrieval,
        config.evaluation.batch_size,
        config.evaluation.matryoshka_dims,
        embedding_dimension,
        retrieval_name=RETRIEVAL_STEPS if scored.during_training else RETRIEVAL,
    )


def evaluator_for(
    config: RunConfig,
    data: PreparedData,
    triplets: Dataset,
    embedding_dimension: int | None,
    split: str = "test",
    during_training: bool = False,
) -> BaseEvaluator:
    """The run's evaluator as the ``evaluation:`` section configures it, on one held-out split: the whole pool and
    every question (baseline, final, ``eval_embed.py``), or with ``during_training`` the bounded pool and questions
    of :func:`evaluation_set`."""
    return evaluator_for_set(
        config, evaluation_set(config, data, triplets, split, during_training), embedding_dimension
    )


def standard_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Rename sentence-transformers' metric keys to the names in metrics.json: ``ndcg@10``, ``mrr@10``,
    ``accuracy@1`` (hit@1), ``recall@1``/``@10``/``@100``, ``map@100``, ``ndcg@10_dim256`` for truncated
    embeddings, and ``triplet_accuracy``; retrieval metrics first, triplet accuracy last.

    The bounded pool's keys (``ir_steps_...``) get the same names: they occur only in the trainer's log, which
    becomes ``metrics.json`` ``history`` (step values only; ``evaluation.during_training`` says their pool), while
    ``baseline`` and ``final`` always come from the whole pool (``ir_...``)."""
    retrieval: dict[str, float] = {}
    truncated: dict[str, float] = {}
    triplet: dict[str, float] = {}
    for key, value in raw.items():
        match = RAW_METRIC.match(key)
        if match is None:
            continue
        evaluator, metric = match.group("evaluator"), match.group("metric")
        name, _, size = evaluator.partition("_dim")
        if evaluator == TRIPLET and metric == "accuracy":
            triplet["triplet_accuracy"] = float(value)
        elif name in (RETRIEVAL, RETRIEVAL_STEPS) and metric in RETRIEVAL_METRICS and (not size or size.isdigit()):
            if size:
                truncated[f"{metric}_dim{size}"] = float(value)
            else:
                retrieval[metric] = float(value)
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
