"""The run report: report.md and its PNG plots are written and non-empty."""

from __future__ import annotations

from embedft.run.files import PLOT_FILES
from embedft.run.report import write_report
from tests.conftest import sample_metrics


def test_report_and_every_plot_are_written(tmp_path):
    similarities = {
        "baseline": {"positive": [0.5, 0.6, 0.7], "negative": [0.4, 0.5, 0.6]},
        "final": {"positive": [0.7, 0.8, 0.9], "negative": [0.2, 0.3, 0.4]},
    }
    report = write_report(tmp_path, sample_metrics(), similarities)
    text = report.read_text()
    assert "| ndcg@10 | 0.5500 | 0.7000 | +0.1500 |" in text
    for name, file in PLOT_FILES.items():
        if name == "mining":  # drawn only from a mining.json
            continue
        assert (tmp_path / file).stat().st_size > 1000
        assert f"]({file})" in text


def test_report_without_similarities_leaves_that_plot_out(tmp_path):
    text = write_report(tmp_path, sample_metrics(), None).read_text()
    assert PLOT_FILES["similarities"] not in text
    assert not (tmp_path / PLOT_FILES["similarities"]).exists()


def test_report_says_when_baseline_and_final_ranked_a_bounded_pool():
    from embedft.run.report import protocol_notes

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


def test_report_and_summary_give_the_seen_and_unseen_groups_and_the_rule_of_a_given_split(tmp_path):
    from embedft.run.report import format_summary, protocol_notes

    metrics = sample_metrics()
    metrics["baseline"] |= {"ndcg@10_seen_answers": 0.7, "ndcg@10_unseen_answers": 0.5}
    metrics["final"] |= {"ndcg@10_seen_answers": 0.8, "ndcg@10_unseen_answers": 0.6}
    metrics["data"] |= {"split": "beir", "drop_shared": "questions", "train_pairs_sharing_an_answer": 7}
    metrics["evaluation"] = {
        "baseline_and_final": {
            "split": "test",
            "questions": 30,
            "documents": 90,
            "relevance": "graded",
            "questions_seen_answers": 10,
            "questions_unseen_answers": 20,
        }
    }
    notes = "\n".join(protocol_notes(metrics))
    assert "seen_answers: 10 test questions whose right answer was trained on" in notes.lower()
    assert "unseen_answers: 20" in notes and "graded relevance" in notes
    assert "`drop_shared: questions`" in notes and "kept 7 that share an answer" in notes
    summary = format_summary(metrics, tmp_path)
    assert "ndcg@10_seen_answers baseline 0.7000 -> final 0.8000" in summary
    assert "unseen_answers: 20 whose answer never was" in summary
    text = write_report(tmp_path, metrics, None).read_text()
    assert "| ndcg@10_unseen_answers | 0.5000 | 0.6000 | +0.1000 |" in text
