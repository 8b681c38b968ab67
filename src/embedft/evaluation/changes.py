"""Which held-out questions got better or worse with fine-tuning: where each question's first right answer ranked
before and after, for the report a person reads before shipping the model."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from embedft.evaluation.evaluators import QueryRanking
from embedft.evaluation.retrieval import RetrievalTask
from embedft.text import shorten

# Questions listed in each direction, and the characters of each text shown.
SHOWN_QUESTIONS = 5
TEXT_WIDTH = 160


def rankings_to_json(rankings: dict[str, QueryRanking]) -> dict[str, dict[str, Any]]:
    """Rankings as plain data, for ``data/baseline.json``."""
    return {query_id: asdict(ranking) for query_id, ranking in rankings.items()}


def rankings_from_json(saved: dict[str, dict[str, Any]]) -> dict[str, QueryRanking]:
    """The rankings :func:`rankings_to_json` wrote."""
    return {query_id: QueryRanking(**ranking) for query_id, ranking in saved.items()}


def reciprocal_rank(ranking: QueryRanking) -> float:
    """1 / rank of the first right answer; 0 when it ranked below the cut-off."""
    return 1.0 / ranking.rank if ranking.rank else 0.0


def question_changes(
    task: RetrievalTask,
    before: dict[str, QueryRanking],
    after: dict[str, QueryRanking],
    shown: int = SHOWN_QUESTIONS,
) -> dict[str, Any]:
    """How many questions improved, stayed and got worse (the rank of their first right answer), and the
    ``shown`` questions that improved most and got worse most, by the change of 1 / rank (a move from rank 2 to 1
    counts more than one from 40 to 20), each with its right answer and its top documents before and after.

    Args:
        task: the test questions and the pool the rankings were made on.
        before: the base model's rankings.
        after: the final model's rankings.
    """
    common = [query_id for query_id in task.queries if query_id in before and query_id in after]
    change = {query_id: reciprocal_rank(after[query_id]) - reciprocal_rank(before[query_id]) for query_id in common}

    def entry(query_id: str) -> dict[str, Any]:
        right = sorted(task.relevant[query_id])
        return {
            "question": shorten(task.queries[query_id], TEXT_WIDTH),
            "right_answer": shorten(task.corpus[right[0]], TEXT_WIDTH) if right else None,
            "rank_before": before[query_id].rank,
            "rank_after": after[query_id].rank,
            "top_before": [shorten(task.corpus[doc], TEXT_WIDTH) for doc in before[query_id].top],
            "top_after": [shorten(task.corpus[doc], TEXT_WIDTH) for doc in after[query_id].top],
        }

    improved = sorted((q for q in common if change[q] > 0), key=lambda q: (-change[q], q))
    worse = sorted((q for q in common if change[q] < 0), key=lambda q: (change[q], q))
    return {
        "questions": len(common),
        "improved": len(improved),
        "unchanged": len(common) - len(improved) - len(worse),
        "worse": len(worse),
        "most_improved": [entry(query_id) for query_id in improved[:shown]],
        "most_worsened": [entry(query_id) for query_id in worse[:shown]],
    }
