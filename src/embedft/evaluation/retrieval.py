"""The retrieval task of held-out questions: every question against the pool, or a bounded pool (NanoBEIR)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


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
