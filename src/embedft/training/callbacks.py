"""Trainer callbacks: the first step's time and memory, the intervals of a resumed run, the baseline at step 0.

This module imports transformers at the top: only the training stage imports it.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from embedft.logs import peak_rss_gib


class FirstStepClock(TrainerCallback):
    """Notes when the first optimizer step of this session ended, and the peak memory until then (for the scale
    benchmark's ``seconds_to_first_step``)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.peak_rss_gib: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.at is None:
            self.at = time.perf_counter()
            self.peak_rss_gib = peak_rss_gib()


class ResumedIntervals(TrainerCallback):
    """Makes a resumed run log, evaluate and save at the intervals it was resumed with.

    The trainer replaces its state with the checkpoint's, which holds the intervals the run started with (it only
    warns that they differ); the decisions to log, evaluate and save read the state. Recomputing them at the start
    of training, after the checkpoint's state was loaded, applies ``training.eval_steps``, ``save_steps`` and
    ``logging_steps`` given with RESUME.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)


class BaselineLogger(TrainerCallback):
    """Hands the baseline scores to every logger (TensorBoard, MLflow, ...) at step 0, as ``eval_baseline_<metric>``,
    so a run's curves start from the untouched model. It calls the loggers' ``on_log`` directly: the trainer's own
    log history (``metrics.json`` ``history``) keeps step values only."""

    def __init__(self, trainer: Any, baseline: dict[str, float]) -> None:
        self.trainer = trainer
        scores = {name: value for name, value in baseline.items() if isinstance(value, (int, float))}
        self.logs = {f"eval_baseline_{name}": float(value) for name, value in scores.items()}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:  # a resumed run logged them in its first session
            self.trainer.callback_handler.on_log(args, state, control, dict(self.logs))
