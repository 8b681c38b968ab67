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
    import torch
    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

    from embedft.config import RunConfig
    from embedft.data import PreparedData
    from embedft.embeddings import EmbeddingCache

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


class SharedPool:
    """The pool's document embeddings for one evaluation call, encoded once and truncated for every Matryoshka size
    (each size used to encode the whole pool again).

    Args:
        batch_size: encoding batch size.
        cache: an embedding cache to read from and write to (baseline and final: a rerun, or a baseline whose miner
            is the base model, encodes nothing); None encodes afresh (during training the weights change).
    """

    def __init__(self, batch_size: int, cache: EmbeddingCache | None = None) -> None:
        self.batch_size = batch_size
        self.cache = cache
        self.embeddings: torch.Tensor | None = None
        self.rows: dict[str, int] = {}

    def encode(self, model: SentenceTransformer, texts: list[str]) -> torch.Tensor:
        """Every document of the pool, at full size, on the model's device (computed on the first call)."""
        import torch

        if not self.rows:
            self.rows = {text: row for row, text in enumerate(texts)}
        if self.embeddings is None:
            if self.cache is not None:
                vectors = self.cache.embeddings(
                    model, texts, "document", self.batch_size, "Encoding the evaluation pool"
                )
                self.embeddings = torch.from_numpy(vectors).to(model.device)
            else:
                self.embeddings = model.encode_document(texts, batch_size=self.batch_size, convert_to_tensor=True)
        return self.embeddings


def pooled_retrieval_evaluator_class() -> type:
    """InformationRetrievalEvaluator that takes its document embeddings from a :class:`SharedPool`."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class PooledRetrievalEvaluator(InformationRetrievalEvaluator):
        def __init__(self, *args: Any, pool: SharedPool, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pool = pool

        def compute_all_metrics(self, model, corpus_model=None, corpus_embeddings=None, output_path=None):
            if corpus_embeddings is None and corpus_model is None:
                corpus_embeddings = self.pool.encode(model, self.corpus)
                if self.truncate_dim is not None:
                    corpus_embeddings = corpus_embeddings[:, : self.truncate_dim]
            return super().compute_all_metrics(model, corpus_model, corpus_embeddings, output_path)

    return PooledRetrievalEvaluator


def pooled_triplet_evaluator_class() -> type:
    """TripletEvaluator that takes the positives' and negatives' embeddings from the :class:`SharedPool` when the
    retrieval evaluators have encoded it (they are pool documents), instead of encoding them again."""
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    class PooledTripletEvaluator(TripletEvaluator):
        def __init__(self, *args: Any, pool: SharedPool, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pool = pool

        def embed_inputs(self, model, sentences, encode_fn_name=None, **kwargs):
            pool = self.pool
            if encode_fn_name == "document" and pool.embeddings is not None and all(t in pool.rows for t in sentences):
                rows = [pool.rows[text] for text in sentences]
                return pool.embeddings[rows].float().cpu().numpy()
            return super().embed_inputs(model, sentences, encode_fn_name, **kwargs)

    return PooledTripletEvaluator


def sequential_evaluator_class() -> type:
    """SequentialEvaluator that forgets the shared pool's embeddings before and after each call, so the model is
    encoded afresh at every evaluation step."""
    from sentence_transformers.base.evaluation.sequential import SequentialEvaluator

    class PoolSequentialEvaluator(SequentialEvaluator):
        def __init__(self, evaluators: list[BaseEvaluator], pool: SharedPool) -> None:
            super().__init__(evaluators)
            self.pool = pool

        def __call__(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            self.pool.embeddings = None
            try:
                return super().__call__(*args, **kwargs)
            finally:
                self.pool.embeddings = None

    return PoolSequentialEvaluator


def build_evaluator(
    triplets: Dataset,
    retrieval: RetrievalTask | None,
    batch_size: int,
    matryoshka_dims: list[int] | None = None,
    embedding_dimension: int | None = None,
    retrieval_name: str = RETRIEVAL,
    cache: EmbeddingCache | None = None,
) -> BaseEvaluator:
    """The evaluators run before, during and after training, in sequence; the pool is encoded once per call.

    Args:
        triplets: evaluation (query, answer, negative) triplets for TripletEvaluator.
        retrieval: the retrieval task for InformationRetrievalEvaluator (None: triplets only).
        batch_size: encoding batch size.
        matryoshka_dims: also run retrieval with embeddings truncated to each of these sizes.
        embedding_dimension: the model's embedding size, to reject larger truncation sizes.
        retrieval_name: the retrieval evaluator's name, the start of its metric keys: ``ir`` for the whole pool,
            ``ir_steps`` for the bounded pool scored during training.
        cache: where the pool's embeddings are kept (see :class:`SharedPool`); None: encoded at every call.

    Raises:
        ConfigError: a matryoshka size larger than the model's embeddings.
    """
    pool = SharedPool(batch_size, cache)
    retrieval_evaluator = pooled_retrieval_evaluator_class()

    evaluators: list[BaseEvaluator] = []
    if retrieval is not None:
        check_matryoshka_dims(matryoshka_dims or [], embedding_dimension)
        for dim in [None, *(matryoshka_dims or [])]:
            evaluators.append(
                retrieval_evaluator(
                    pool=pool,
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
    # After retrieval, so its answers and negatives come from the pool's embeddings.
    evaluators.append(
        pooled_triplet_evaluator_class()(
            pool=pool,
            anchors=triplets[QUERY],
            positives=triplets[ANSWER],
            negatives=triplets[NEGATIVE],
            name=TRIPLET,
            batch_size=batch_size,
            write_csv=False,
        )
    )
    return sequential_evaluator_class()(evaluators, pool)


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
    bounded: bool = False  # max_pool / max_queries left out questions or documents

    def record(self) -> dict[str, Any]:
        """The split, pool ('whole' or 'bounded'), questions and documents, as ``metrics.json`` ``evaluation``
        records them (documents: None without retrieval evaluation)."""
        questions = len(self.retrieval.queries) if self.retrieval is not None else len(set(self.triplets[QUERY]))
        documents = len(self.retrieval.corpus) if self.retrieval is not None else None
        return {
            "split": self.split,
            "pool": "bounded" if self.bounded else "whole",
            "questions": questions,
            "documents": documents,
        }


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
        build_retrieval_task(data.splits[split], data.all_pairs, data.corpus)
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
