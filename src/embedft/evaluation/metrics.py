"""sentence-transformers' metric keys under the stable names of ``metrics.json``."""

from __future__ import annotations

import re

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
