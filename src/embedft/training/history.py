"""What a training reported: steps, losses and the per-step log, from the trainer or read back from a checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedft.evaluation.metrics import standard_metrics


@dataclass
class TrainingResult:
    """What a finished training run reports: steps, losses and the per-step log."""

    global_step: int
    train_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_step: int | None = None  # the checkpoint a resumed run continued from
    first_step_at: float | None = None  # time.perf_counter() when the first optimizer step ended
    first_step_rss_gib: float | None = None  # the process's peak resident memory until then
    precision: str | None = None  # "bf16", "fp16" or "fp32": what the trainer computed in (None: not known)
    chosen_step: int | None = None  # the best checkpoint on dev, which the model ended as (None: the last step)
    merge: dict[str, Any] | None = None  # what merge_with_base did (MergeChoice.to_dict)


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean loss per step over the logged steps, each logged loss weighted by the steps it averages.

    The log history is restored from a checkpoint, so this covers a resumed run from its first step; steps after
    the last logging step are not in it.
    """
    total = steps = 0.0
    previous = 0
    for record in log_history:
        if "loss" in record and "step" in record:
            covered = record["step"] - previous
            total += record["loss"] * covered
            steps += covered
            previous = record["step"]
    return total / steps if steps else float("nan")


# What the trainer itself logs besides the evaluator's metrics.
TRAINER_LOG_KEYS = ("loss", "learning_rate", "eval_loss", "grad_norm", "eval_runtime")


def history_from_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per logged step: ``step``, ``epoch``, and any of ``loss``, ``learning_rate``, ``eval_loss`` and
    the evaluator metrics under their standard names."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in log_history:
        if "train_runtime" in record:  # the closing summary, not a step
            continue
        step = int(record.get("step", 0))
        entry = by_step.setdefault(step, {"step": step})
        if "epoch" in record:
            entry["epoch"] = float(record["epoch"])
        for key in TRAINER_LOG_KEYS:
            if key in record:
                entry[key] = float(record[key])
        entry.update(standard_metrics({k: v for k, v in record.items() if isinstance(v, (int, float))}))
    return [by_step[step] for step in sorted(by_step)]


def history_from_checkpoint(checkpoint: str | None) -> TrainingResult:
    """What a finished training reported, read back from its last checkpoint's trainer state."""
    if checkpoint is None:
        return TrainingResult(global_step=0, train_loss=float("nan"))
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return TrainingResult(
        global_step=int(state["global_step"]),
        train_loss=mean_logged_loss(state["log_history"]),
        history=history_from_log(state["log_history"]),
        chosen_step=state.get("best_global_step"),
    )
