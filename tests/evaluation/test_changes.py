"""The test questions that got better or worse: counts and the most moved, by the rank of the first right answer."""

from __future__ import annotations

from embedft.evaluation.changes import question_changes, rankings_from_json, rankings_to_json
from embedft.evaluation.evaluators import QueryRanking
from embedft.evaluation.retrieval import RetrievalTask


def test_questions_are_counted_and_the_most_moved_listed_with_their_top_documents():
    task = RetrievalTask(
        queries={"q1": "permit?", "q2": "fee?", "q3": "roof?", "q4": "deck?"},
        corpus={"d1": "permits", "d2": "fees", "d3": "roofs", "d4": "decks"},
        relevant={"q1": {"d1"}, "q2": {"d2"}, "q3": {"d3"}, "q4": {"d4"}},
    )
    before = {
        "q1": QueryRanking(3, ["d2", "d3", "d1"]),
        "q2": QueryRanking(1, ["d2", "d1", "d3"]),
        "q3": QueryRanking(None, ["d1", "d2", "d4"]),  # below the cut-off
        "q4": QueryRanking(2, ["d1", "d4", "d2"]),
    }
    after = {
        "q1": QueryRanking(1, ["d1", "d2", "d3"]),  # 1/3 -> 1: +0.67
        "q2": QueryRanking(1, ["d2", "d1", "d3"]),  # unchanged
        "q3": QueryRanking(40, ["d1", "d2", "d4"]),  # 0 -> 1/40: +0.025
        "q4": QueryRanking(4, ["d1", "d2", "d3"]),  # 1/2 -> 1/4: -0.25
    }
    changes = question_changes(task, before, after, shown=1)
    assert (changes["questions"], changes["improved"], changes["unchanged"], changes["worse"]) == (4, 2, 1, 1)
    assert changes["most_improved"] == [
        {
            "question": "permit?",
            "right_answer": "permits",
            "rank_before": 3,
            "rank_after": 1,
            "top_before": ["fees", "roofs", "permits"],
            "top_after": ["permits", "fees", "roofs"],
        }
    ]
    assert [e["question"] for e in changes["most_worsened"]] == ["deck?"]
    assert rankings_from_json(rankings_to_json(before)) == before
