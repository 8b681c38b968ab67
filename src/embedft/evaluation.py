"""Scoring a model: TripletEvaluator accuracy on mined evaluation triplets, under stable metric names."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from embedft.data import ANSWER, QUERY
from embedft.mining import NEGATIVE

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

TRIPLET = "triplet"
# "eval_triplet_cosine_accuracy" (trainer) or "triplet_cosine_accuracy" (direct call) -> "triplet_accuracy"
RAW_METRIC = re.compile(r"^(?:eval_)?(?P<evaluator>[a-z]+)_(?:cosine|dot|euclidean|manhattan|max)_(?P<metric>.+)$")


def build_evaluator(triplets: Dataset, batch_size: int) -> BaseEvaluator:
    """The evaluator run before, during and after training.

    Args:
        triplets: evaluation (query, answer, negative) triplets.
        batch_size: encoding batch size.
    """
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    return TripletEvaluator(
        anchors=triplets[QUERY],
        positives=triplets[ANSWER],
        negatives=triplets[NEGATIVE],
        name=TRIPLET,
        batch_size=batch_size,
        write_csv=False,
    )


def standard_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Rename sentence-transformers' metric keys to the names used in metrics.json (``triplet_accuracy``, ...)."""
    metrics: dict[str, float] = {}
    for key, value in raw.items():
        match = RAW_METRIC.match(key)
        if match is None:
            continue
        evaluator, metric = match.group("evaluator"), match.group("metric")
        name = f"{evaluator}_{metric}" if evaluator == TRIPLET else metric
        metrics[name] = float(value)
    return metrics


def evaluate(model: SentenceTransformer, evaluator: BaseEvaluator) -> dict[str, float]:
    """Run ``evaluator`` on ``model`` and return the metrics under their standard names."""
    return standard_metrics(evaluator(model))
