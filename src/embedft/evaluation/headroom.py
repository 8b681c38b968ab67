"""Whether a test set can show a gain: enough distinct right answers, and a baseline below the ceiling.

Questions that share an answer are held out together, so on FAQ data a test set of 40 questions can hold only 6
distinct answers; every metric then reads 1.0000 before and after, and every plot is flat. These checks say so in
one line, with the fix, where the user looks: the dry run, the log, the closing summary and the report.
"""

from __future__ import annotations

from typing import Any

# Fewer distinct right answers than this among the test questions, or a baseline NDCG@10 at or above this, leaves
# little room for a gain to show.
MIN_TEST_ANSWERS = 20
CEILING_NDCG = 0.98

FIX = (
    "hold out more with a larger test_size, score a separate eval_dataset_name, or widen the pool with a corpus_file "
    "of further documents"
)


def few_answers_warning(test_answers: int, test_questions: int) -> str | None:
    """The warning for a test set with fewer than :data:`MIN_TEST_ANSWERS` distinct right answers, else None."""
    if test_answers >= MIN_TEST_ANSWERS:
        return None
    return (
        f"the {test_questions} test questions have only {test_answers} distinct right answers: the scores can hardly "
        f"show a gain; {FIX}"
    )


def ceiling_warning(baseline_ndcg: float) -> str | None:
    """The warning for a baseline NDCG@10 at or above :data:`CEILING_NDCG`, else None."""
    if baseline_ndcg < CEILING_NDCG:
        return None
    return f"the baseline NDCG@10 is {baseline_ndcg:.4f}, at the ceiling: fine-tuning cannot show a gain here; {FIX}"


def headroom_warnings(metrics: dict[str, Any]) -> list[str]:
    """Both warnings that apply to a finished run's ``metrics.json`` (its data counts and baseline)."""
    data, baseline = metrics.get("data", {}), metrics.get("baseline", {})
    warnings = []
    if isinstance(data.get("eval_answers"), int):
        warnings.append(few_answers_warning(data["eval_answers"], data.get("eval_questions", "?")))
    if isinstance(baseline.get("ndcg@10"), (int, float)):
        warnings.append(ceiling_warning(baseline["ndcg@10"]))
    return [warning for warning in warnings if warning is not None]
