"""The run report: report.md and its PNG plots are written and non-empty."""

from __future__ import annotations

from embedft.report import PLOTS, write_report


def sample_metrics() -> dict:
    history = [
        {"step": 1, "epoch": 0.1, "loss": 1.2, "learning_rate": 1e-5},
        {"step": 5, "epoch": 0.5, "loss": 0.8, "eval_loss": 0.9, "ndcg@10": 0.6, "triplet_accuracy": 0.6},
        {"step": 10, "epoch": 1.0, "loss": 0.5, "eval_loss": 0.7, "ndcg@10": 0.7, "triplet_accuracy": 0.7},
    ]
    return {
        "baseline": {"triplet_accuracy": 0.5, "ndcg@10": 0.55},
        "final": {"triplet_accuracy": 0.7, "ndcg@10": 0.7},
        "history": history,
        "data": {"train_pairs": 10},
        "timings": {"total_seconds": 12.0},
    }


def test_report_and_every_plot_are_written(tmp_path):
    similarities = {
        "baseline": {"positive": [0.5, 0.6, 0.7], "negative": [0.4, 0.5, 0.6]},
        "final": {"positive": [0.7, 0.8, 0.9], "negative": [0.2, 0.3, 0.4]},
    }
    report = write_report(tmp_path, sample_metrics(), similarities)
    text = report.read_text()
    assert "| ndcg@10 | 0.5500 | 0.7000 | +0.1500 |" in text
    for file in PLOTS.values():
        assert (tmp_path / file).stat().st_size > 1000
        assert f"]({file})" in text


def test_report_without_similarities_leaves_that_plot_out(tmp_path):
    text = write_report(tmp_path, sample_metrics(), None).read_text()
    assert PLOTS["similarities"] not in text
    assert not (tmp_path / PLOTS["similarities"]).exists()


def test_report_says_when_baseline_and_final_ranked_a_bounded_pool():
    from embedft.report import protocol_notes

    metrics = {
        "baseline": {"ndcg@10": 0.5},
        "history": [],
        "data": {"eval_questions": 1000, "retrieval_pool": 1_000_000},
        "evaluation": {
            "baseline_and_final": {"split": "test", "pool": "bounded", "questions": 200, "documents": 5000}
        },
    }
    (first, *_) = protocol_notes(metrics)
    assert "200 held-out test questions" in first
    assert "bounded pool of 5000 of the 1000000 documents" in first
