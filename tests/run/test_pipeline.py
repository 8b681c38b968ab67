"""The pipeline's own parts: the stage clock, the step evaluation's questions, and the metrics it assembles."""

from __future__ import annotations

import time

from embedft.run.pipeline import StageClock, evaluation_protocol
from embedft.text import shorten
from embedft.training.history import TrainingResult


def test_each_stage_records_its_seconds_and_peak_memory_in_order():
    clock = StageClock()
    with clock.stage("data"):
        time.sleep(0.01)
    with clock.stage("mining"):
        pass
    assert list(clock.timings) == ["data_seconds", "mining_seconds"]
    assert clock.timings["data_seconds"] >= 0.01
    assert list(clock.peak_memory) == ["data", "mining"] and clock.peak_memory["data"] > 0
    clock.first_step(
        TrainingResult(global_step=1, train_loss=1.0, first_step_at=time.perf_counter(), first_step_rss_gib=1.5)
    )
    total = clock.total()
    assert total["seconds_to_first_step"] <= total["total_seconds"]
    assert total["peak_rss_gib_at_first_step"] == 1.5


def test_a_run_without_a_first_step_records_none():
    clock = StageClock()
    clock.first_step(TrainingResult(global_step=0, train_loss=float("nan")))
    assert "seconds_to_first_step" not in clock.total()


def test_the_protocol_names_what_each_score_was_measured_on():
    whole = {"split": "test", "pool": "whole", "questions": 3, "documents": 9}
    steps = {"split": "dev", "pool": "bounded", "questions": 2, "documents": 5}
    protocol = evaluation_protocol(whole, steps)
    assert protocol["baseline_and_final"] is whole and protocol["during_training"] is steps
    assert "reloaded" in protocol["final_model"]


def test_long_texts_are_shown_on_one_shortened_line():
    assert shorten("a\nb   c") == "a b c"
    assert shorten("x" * 150, width=20) == "x" * 17 + "..."
