"""sentence-transformers' evaluators (InformationRetrievalEvaluator, TripletEvaluator) sharing one encoding of the
pool per call.

This module imports torch and sentence-transformers at the top: only scoring imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from sentence_transformers.base.evaluation.sequential import SequentialEvaluator
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator, TripletEvaluator

from embedft.columns import ANSWER, NEGATIVE, QUERY
from embedft.config.validation import check_matryoshka_dims
from embedft.evaluation.metrics import RETRIEVAL, TRIPLET, standard_metrics
from embedft.evaluation.retrieval import RetrievalTask
from embedft.models.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer


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


def ndcg_at_k(gains: list[float], ideal_gains: list[float], k: int) -> float:
    """NDCG@k of one ranking: the gains of its top documents against the best possible order of the relevant
    documents' gains (linear gains, log2 discount: trec_eval's ndcg_cut, which MTEB reports)."""
    ideal = InformationRetrievalEvaluator.compute_dcg_at_k(sorted(ideal_gains, reverse=True), k)
    return InformationRetrievalEvaluator.compute_dcg_at_k(gains, k) / ideal if ideal > 0 else 0.0


# The documents kept of each question's ranking for the report's list of questions that got better or worse.
RANKING_TOP = 3


@dataclass
class QueryRanking:
    """Where one question's first relevant document ranked (1-based; None: below the evaluator's deepest cut-off,
    100), and the ids of its top :data:`RANKING_TOP` documents."""

    rank: int | None
    top: list[str]


class PooledRetrievalEvaluator(InformationRetrievalEvaluator):
    """InformationRetrievalEvaluator that takes its document embeddings from a :class:`SharedPool`, scores NDCG with
    graded relevance when it has ``grades`` (sentence-transformers' counts every relevant document 1), and keeps the
    NDCG and the ranking of each question of its last call (``query_ndcg``, ``query_rankings``), for the breakdown
    of the score into groups and the questions that got better or worse."""

    def __init__(self, *args: Any, pool: SharedPool, grades: dict[str, dict[str, int]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.grades = grades
        self.query_ndcg: dict[str, float] = {}
        self.query_rankings: dict[str, QueryRanking] = {}

    def compute_metrics(self, queries_result_list: list[object]) -> dict[str, dict[int, float]]:
        scores = super().compute_metrics(queries_result_list)
        k = max(self.ndcg_at_k)
        self.query_ndcg, self.query_rankings = {}, {}
        for index, results in enumerate(queries_result_list):
            query_id = self.queries_ids[index]
            gains = (
                self.grades[query_id] if self.grades is not None else dict.fromkeys(self.relevant_docs[query_id], 1)
            )
            ranking = sorted(results, key=lambda hit: (-hit["score"], hit["corpus_id"]))
            ranked = [gains.get(hit["corpus_id"], 0) for hit in ranking[:k]]
            self.query_ndcg[query_id] = ndcg_at_k(ranked, list(gains.values()), k)
            first = next((rank for rank, hit in enumerate(ranking, 1) if gains.get(hit["corpus_id"], 0) > 0), None)
            self.query_rankings[query_id] = QueryRanking(first, [hit["corpus_id"] for hit in ranking[:RANKING_TOP]])
        if self.grades is not None:
            scores["ndcg@k"] = {k: float(np.mean(list(self.query_ndcg.values())))}
        return scores

    def compute_all_metrics(self, model, corpus_model=None, corpus_embeddings=None, output_path=None):
        if corpus_embeddings is None and corpus_model is None:
            corpus_embeddings = self.pool.encode(model, self.corpus)
            if self.truncate_dim is not None:
                corpus_embeddings = corpus_embeddings[:, : self.truncate_dim]
        return super().compute_all_metrics(model, corpus_model, corpus_embeddings, output_path)


class PooledTripletEvaluator(TripletEvaluator):
    """TripletEvaluator that takes the positives' and negatives' embeddings from the :class:`SharedPool` when the
    retrieval evaluators have encoded it (they are pool documents), instead of encoding them again."""

    def __init__(self, *args: Any, pool: SharedPool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    def embed_inputs(self, model, sentences, encode_fn_name=None, **kwargs):
        pool = self.pool
        if encode_fn_name == "document" and pool.embeddings is not None and all(t in pool.rows for t in sentences):
            rows = [pool.rows[text] for text in sentences]
            return pool.embeddings[rows].float().cpu().numpy()
        return super().embed_inputs(model, sentences, encode_fn_name, **kwargs)


class PoolSequentialEvaluator(SequentialEvaluator):
    """SequentialEvaluator that forgets the shared pool's embeddings before and after each call, so the model is
    encoded afresh at every evaluation step. ``groups`` are the question ids of each group the whole-size
    retrieval score is broken down into (:meth:`group_metrics`)."""

    def __init__(
        self, evaluators: list[BaseEvaluator], pool: SharedPool, groups: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(evaluators)
        self.pool = pool
        self.groups = groups or {}

    def retrieval(self) -> PooledRetrievalEvaluator | None:
        """The full-size retrieval evaluator, None without retrieval evaluation."""
        return next((e for e in self.evaluators if isinstance(e, PooledRetrievalEvaluator)), None)

    def rankings(self) -> dict[str, QueryRanking]:
        """Each question's ranking of the last call (empty without retrieval evaluation)."""
        retrieval = self.retrieval()
        return dict(retrieval.query_rankings) if retrieval is not None else {}

    def group_metrics(self) -> dict[str, float]:
        """``ndcg@10_<group>`` of the last call: the mean NDCG@10 of each group's questions. With one group empty
        (a random split holds out whole groups of questions that share answers: none was trained on) the other is
        the whole score, and nothing is added."""
        retrieval = self.retrieval()
        if retrieval is None or not retrieval.query_ndcg:
            return {}
        if not all(any(qid in retrieval.query_ndcg for qid in ids) for ids in self.groups.values()):
            return {}
        k = max(retrieval.ndcg_at_k)
        metrics = {}
        for group, query_ids in self.groups.items():
            values = [retrieval.query_ndcg[qid] for qid in query_ids if qid in retrieval.query_ndcg]
            metrics[f"ndcg@{k}_{group}"] = float(np.mean(values))
        return metrics

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        self.pool.embeddings = None
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.pool.embeddings = None


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
    evaluators: list[BaseEvaluator] = []
    if retrieval is not None:
        check_matryoshka_dims(matryoshka_dims or [], embedding_dimension, "evaluation.matryoshka_dims")
        for dim in [None, *(matryoshka_dims or [])]:
            evaluators.append(
                PooledRetrievalEvaluator(
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
                    grades=retrieval.grades,
                )
            )
    # After retrieval, so its answers and negatives come from the pool's embeddings.
    evaluators.append(
        PooledTripletEvaluator(
            pool=pool,
            anchors=triplets[QUERY],
            positives=triplets[ANSWER],
            negatives=triplets[NEGATIVE],
            name=TRIPLET,
            batch_size=batch_size,
            write_csv=False,
        )
    )
    return PoolSequentialEvaluator(evaluators, pool, retrieval.answer_groups() if retrieval is not None else None)


def evaluate(model: SentenceTransformer, evaluator: BaseEvaluator) -> dict[str, float]:
    """Run ``evaluator`` on ``model`` and return the metrics under their standard names, then NDCG@10 of each group
    of questions (``ndcg@10_seen_answers``, ``ndcg@10_unseen_answers``) before triplet accuracy."""
    metrics = standard_metrics(evaluator(model))
    if not isinstance(evaluator, PoolSequentialEvaluator):
        return metrics
    triplet = {key: metrics.pop(key) for key in list(metrics) if key == "triplet_accuracy"}
    return {**metrics, **evaluator.group_metrics(), **triplet}
