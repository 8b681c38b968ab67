"""The retrieval task of held-out questions: every question against the pool, or a bounded pool (NanoBEIR)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY, RELEVANCE
from embedft.data.rows import iter_pairs, iter_rows

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


# The two groups of held-out questions the test score is broken down into (metrics.json, report, summary).
SEEN_ANSWERS = "seen_answers"  # a right answer of the question was a training positive, with another question
UNSEEN_ANSWERS = "unseen_answers"  # no right answer of the question was trained on


@dataclass
class RetrievalTask:
    """Held-out questions, the document pool, and which documents answer which question (ids are strings).

    ``grades`` holds graded relevance (``relevance_column``, BEIR qrels) for NDCG; None: every relevant document
    counts 1. ``seen`` holds the questions whose right answer was a training positive."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    grades: dict[str, dict[str, int]] | None = None
    seen: set[str] = field(default_factory=set)

    @property
    def graded(self) -> bool:
        """Whether NDCG uses grades: some relevant document has a grade other than 1."""
        return self.grades is not None and any(g != 1 for grades in self.grades.values() for g in grades.values())

    def answer_groups(self) -> dict[str, list[str]]:
        """The question ids of each group: those whose right answer was trained on, and the others."""
        return {
            SEEN_ANSWERS: [qid for qid in self.queries if qid in self.seen],
            UNSEEN_ANSWERS: [qid for qid in self.queries if qid not in self.seen],
        }


def build_retrieval_task(
    held_out: Dataset, corpus: list[str], trained_answers: set[str] | None = None
) -> RetrievalTask:
    """Every distinct held-out question against ``corpus``; its answers on the held-out side are relevant.

    Only the held-out side says what is relevant, as a BEIR/MTEB task's test qrels do: a held-out question's
    training copy is dropped from training, not counted. With a ``relevance`` column its values are the grades.

    Args:
        held_out: evaluation pairs (all the pairs of each held-out question).
        corpus: the document pool; it must contain every answer.
        trained_answers: the answers of the training pairs, to mark the questions whose answer was trained on.
    """
    doc_ids = {text: f"d{index}" for index, text in enumerate(corpus)}
    questions = list(dict.fromkeys(held_out[QUERY]))
    query_ids = {text: f"q{index}" for index, text in enumerate(questions)}
    relevant: dict[str, set[str]] = {query_ids[q]: set() for q in questions}
    grades: dict[str, dict[str, int]] | None = (
        {qid: {} for qid in relevant} if RELEVANCE in held_out.column_names else None
    )
    rows = iter_rows(held_out, QUERY, ANSWER, RELEVANCE) if grades is not None else iter_pairs(held_out)
    seen: set[str] = set()
    for query, answer, *grade in rows:
        if answer not in doc_ids:
            continue
        qid, did = query_ids[query], doc_ids[answer]
        relevant[qid].add(did)
        if grades is not None:
            grades[qid][did] = max(int(grade[0]), grades[qid].get(did, 0))
        if trained_answers is not None and answer in trained_answers:
            seen.add(qid)
    return RetrievalTask(
        queries={qid: text for text, qid in query_ids.items()},
        corpus={did: text for text, did in doc_ids.items()},
        relevant=relevant,
        grades=grades,
        seen=seen,
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
        grades={qid: dict(task.grades[qid]) for qid in kept_queries} if task.grades is not None else None,
        seen={qid for qid in kept_queries if qid in task.seen},
    )
