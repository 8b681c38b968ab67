"""WiSE-FT (Wortsman et al. 2022): the trained weights interpolated with the base model's, ``w = (1 - a) * base +
a * trained``, the weight ``a`` chosen on the dev questions. Fine-tuning on a few thousand pairs can forget what the
base model knew; a merge often keeps most of the gain and some of that knowledge.

The interpolation is sentence-transformers' own ``SentenceTransformer.merge`` (mergekit's ``linear`` method), which
also checks that the two models have the same modules, configuration and tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

# The weights of the trained model that merge_with_base: auto scores on the dev questions; 1.0 is the trained model.
AUTO_WEIGHTS = (0.5, 0.7, 0.85, 1.0)


@dataclass
class MergeChoice:
    """What ``merge_with_base`` did, for ``metrics.json`` ``merge`` and the report."""

    setting: str  # "auto", "off" or the configured weight
    weight: float  # a, the trained model's share; 1.0: the trained model as it is
    scores: dict[str, float] = field(default_factory=dict)  # with auto: each weight's dev score
    metric: str | None = None  # the dev metric the scores are
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"setting": self.setting, "weight": self.weight, "reason": self.reason}
        if self.scores:
            record |= {"metric": self.metric, "dev_scores": self.scores}
        return record


def merge_setting(value: float | str | bool) -> float | Literal["auto", "off"]:
    """``merge_with_base`` as ``'auto'``, ``'off'`` or a weight (YAML reads a bare ``off`` as false)."""
    if value is False or value == "off":
        return "off"
    return "auto" if value == "auto" else float(value)


def merged_model(trained: SentenceTransformer, base: SentenceTransformer, weight: float) -> SentenceTransformer:
    """``(1 - weight) * base + weight * trained`` for every floating-point tensor, as a new model on the trained
    model's device with its prompts and configuration; ``weight`` 1.0 returns ``trained`` itself."""
    if weight == 1.0:
        return trained
    return type(trained).merge(
        [trained, base], "linear", parameters={"weight": [weight, 1.0 - weight]}, device=trained.device
    )


def choose_merge(
    trained: SentenceTransformer,
    load_base: Callable[[], SentenceTransformer],
    score_dev: Callable[[SentenceTransformer], dict[str, float]] | None,
    setting: float | str | bool,
) -> tuple[SentenceTransformer, MergeChoice]:
    """The final model as ``merge_with_base`` says, and what was chosen.

    Args:
        trained: the trained model (the best checkpoint on dev, when one was chosen).
        load_base: loads the untrained base model, on the trained model's device (called only when a merge is made).
        score_dev: a model's metrics on the dev questions (the bounded pool of the evaluation during training);
            None without dev questions, where ``auto`` leaves the trained model as it is.
        setting: ``merge_with_base``.
    """
    setting = merge_setting(setting)
    if setting == "off":
        return trained, MergeChoice("off", 1.0, reason="merge_with_base is off")
    if setting != "auto":
        merged = merged_model(trained, load_base(), setting)
        return merged, MergeChoice(str(setting), setting, reason="merge_with_base gives the weight")
    if score_dev is None:
        return trained, MergeChoice("auto", 1.0, reason="no dev questions to choose a weight on: not merged")
    base = load_base()
    scores: dict[str, float] = {}
    best, best_weight, best_score, metric = trained, 1.0, float("-inf"), "ndcg@10"
    for weight in AUTO_WEIGHTS:
        candidate = merged_model(trained, base, weight)
        values = score_dev(candidate)
        metric = "ndcg@10" if "ndcg@10" in values else "triplet_accuracy"
        scores[str(weight)] = values[metric]
        logger.info("merge_with_base a=%s: dev %s %.4f", weight, metric, values[metric])
        if values[metric] >= best_score:  # ties go to the larger weight, the one closer to the trained model
            best, best_weight, best_score = candidate, weight, values[metric]
    reason = f"the best dev {metric} of the weights {', '.join(scores)}"
    return best, MergeChoice("auto", best_weight, scores, metric, reason=reason)
