"""Mining diagnostics and n-tuple rows: what the filters dropped, pairs left out, scores, near-duplicates, and rows
of several negatives that reach the loss whole."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from datasets import Dataset

from embedft.config.schema import MiningConfig, RunConfig, TrainingConfig
from embedft.mining.diagnostics import HISTOGRAM_EDGES, NEAR_DUPLICATE_SIMILARITY, score_summary
from embedft.mining.rows import load_triplets
from embedft.mining.training_set import mine_training_set
from embedft.run.files import PLOT_FILES
from embedft.run.report import mining_section, write_report
from tests.conftest import at, query_vector, rows, sample_metrics, unit, word_model


def one_pair(vectors: dict[str, list[float]], options: MiningConfig, extra: list[str]):
    """Mine the one pair (q, pos) with ``extra`` documents as the other candidates."""
    train = Dataset.from_dict({"query": ["q"], "answer": ["pos"]})
    return mine_training_set(train, word_model(vectors), options, seed=1, extra_documents=extra)


def test_a_false_negative_above_95_percent_of_the_positive_is_dropped_and_counted():
    # Positive 0.8: the line is 0.8 - 0.05 * 0.8 = 0.76. "fn" (0.78) is above it, "near" (0.74) below.
    vectors = {"q": query_vector(0), "pos": at(0.8), "fn": at(0.78), "near": at(0.74), "far": at(0.2)}
    mined = one_pair(vectors, MiningConfig(margin=None, relative_margin=0.05), ["fn", "near", "far"])
    assert rows(mined.triplets) == [("q", "pos", "near")]
    diagnostics = mined.diagnostics
    assert diagnostics.filtered == {"relative_margin": 1}
    assert diagnostics.candidates == 3  # fn, near, far: the positive is never a candidate
    assert (diagnostics.pairs, diagnostics.pairs_kept) == (1, 1)
    assert diagnostics.positive_scores["quantiles"]["50"] == pytest.approx(0.8, abs=1e-5)
    assert diagnostics.negative_scores["quantiles"]["50"] == pytest.approx(0.74, abs=1e-5)
    assert diagnostics.to_dict()["candidates"] == {"ranked": 3, "filtered": {"relative_margin": 1}}
    assert "filters dropped 1 of 3 candidates (relative_margin 1)" in diagnostics.summary()


def test_a_pair_without_a_valid_candidate_is_dropped_counted_and_logged(caplog):
    # Every candidate of qb (qa's answer included) scores above qb's positive: margin 0 removes them all.
    vectors = {
        "qa": query_vector(1),
        "pa": unit(0.5, 0.8),
        "qb": query_vector(0),
        "pb": unit(0.2, 0.0),
        "x": at(0.5),
        "y": at(0.6),
    }
    train = Dataset.from_dict({"query": ["qa", "qb"], "answer": ["pa", "pb"]})
    with caplog.at_level(logging.INFO, logger="embedft.mining"):
        options = MiningConfig(margin=0.0, unmined_pairs="drop")
        mined = mine_training_set(train, word_model(vectors), options, 1, extra_documents=["x", "y"])
    assert mined.triplets["query"] == ["qa"] and mined.pairs is None
    pairs = mined.diagnostics.to_dict()["pairs"]
    assert pairs == {
        "total": 2,
        "kept": 1,
        "without_negative": 1,
        "too_few_negatives": 0,
        "unmined_pairs": "drop",
        "kept_in_batch": 0,
        "kept_with_random_negatives": 0,
        "left_out": 1,
    }
    assert mined.diagnostics.filtered == {"absolute_margin": 3}  # pa, x and y, all above pb
    assert mined.diagnostics.positive_scores["count"] == 2  # every pair's positive, kept or not
    assert mined.diagnostics.negative_scores["count"] == 1
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Mining: ")]
    assert len(summary) == 1 and summary[0].startswith("Mining: 1 of 2 pairs kept, negatives score")
    assert any("1 of 2 training pairs got no negative" in r.getMessage() for r in caplog.records)  # a warning


def test_a_pair_with_every_candidate_filtered_leaves_empty_score_summaries():
    vectors = {"q": query_vector(0), "pos": at(0.3), "x": at(0.5)}
    mined = one_pair(vectors, MiningConfig(margin=0.0), ["x"])
    assert len(mined.triplets) == 0
    diagnostics = mined.diagnostics
    assert diagnostics.negative_scores["count"] == 0 and diagnostics.negative_scores["mean"] is None
    assert diagnostics.near_duplicate_rate == 0.0
    assert "0 of 1 pairs kept, no negatives" in diagnostics.summary()
    json.dumps(diagnostics.to_dict())  # None, not NaN: valid JSON
    assert "| query-negative | 0 | - |" in "\n".join(mining_section(diagnostics.to_dict(), None))


def test_the_near_duplicate_rate_counts_a_negative_identical_to_the_positive():
    # "twin" has the positive's own vector (the same answer in other words); "other" is a plain negative.
    vectors = {"q": query_vector(0), "pos": at(0.8), "twin": at(0.8), "other": at(0.5)}
    mined = one_pair(vectors, MiningConfig(margin=None, num_negatives=2), ["twin", "other"])
    assert rows(mined.triplets) == [("q", "pos", "twin", "other")]
    diagnostics = mined.diagnostics
    assert (diagnostics.negatives, diagnostics.near_duplicates) == (2, 1)
    assert diagnostics.near_duplicate_rate == 0.5
    assert diagnostics.positive_negative_similarity["max"] == pytest.approx(1.0, abs=1e-5)
    # "other" against the positive: 0.5 * 0.8 + sqrt(0.75) * sqrt(0.36).
    assert diagnostics.positive_negative_similarity["min"] == pytest.approx(0.4 + np.sqrt(0.75 * 0.36), abs=1e-5)
    assert diagnostics.to_dict()["near_duplicates"] == {
        "threshold": NEAR_DUPLICATE_SIMILARITY,
        "count": 1,
        "rate": 0.5,
    }
    assert "50.0% near-duplicates of the positive" in diagnostics.summary()


def test_n_tuples_drop_pairs_with_too_few_negatives_and_count_them(caplog):
    # q has one valid candidate ("a"; b, rpos and c score above its positive), r has several (c, pos, a, b): with
    # two negatives per row only r keeps a row, as mine_hard_negatives' n-tuple format does.
    vectors = {
        "q": query_vector(0),
        "pos": unit(0.8, 0.0),
        "a": unit(0.5, 0.0),  # q's one valid candidate
        "b": unit(0.9, 0.0),
        "r": query_vector(1),
        "rpos": unit(0.85, 0.5),  # r's documents all score above q's positive on q
        "c": unit(0.85, 0.3),
    }
    train = Dataset.from_dict({"query": ["q", "r"], "answer": ["pos", "rpos"]})
    options = MiningConfig(margin=0.0, num_negatives=2, unmined_pairs="drop")
    with caplog.at_level(logging.WARNING, logger="embedft.mining"):
        mined = mine_training_set(train, word_model(vectors), options, seed=1, extra_documents=["a", "b", "c"])
    assert mined.triplets.column_names == ["query", "answer", "negative_1", "negative_2"]
    assert [row[:3] for row in rows(mined.triplets)] == [("r", "rpos", "c")]
    pairs = mined.diagnostics.to_dict()["pairs"]
    assert (pairs["total"], pairs["kept"], pairs["without_negative"], pairs["too_few_negatives"]) == (2, 1, 0, 1)
    assert pairs["left_out"] == 1
    assert mined.diagnostics.negatives == 2  # the kept row's two negatives; q's lone "a" is not counted
    assert any(
        "1 of 2 training pairs got fewer than mining.num_negatives=2 negatives" in r.getMessage()
        for r in caplog.records
    )


def test_score_summary_quantiles_and_fixed_histogram_bins():
    values = np.array([0.1, 0.2, 0.3, 0.4, 1.0000001], dtype=np.float32)  # a cosine rounded past 1
    summary = score_summary(values)
    assert summary["count"] == 5 and summary["quantiles"]["50"] == pytest.approx(0.3)
    assert list(summary["quantiles"]) == ["5", "25", "50", "75", "95"]
    assert len(summary["histogram"]) == len(HISTOGRAM_EDGES) - 1 and sum(summary["histogram"]) == 5
    assert summary["histogram"][-1] == 1  # the last bin holds it
    assert HISTOGRAM_EDGES[0] == -1.0 and HISTOGRAM_EDGES[-1] == 1.0


def test_n_tuple_rows_reach_the_loss_with_every_negative(tmp_path, monkeypatch):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from embedft.training.trainer import train_model

    rng = np.random.default_rng(0)
    words = [f"q{i}" for i in range(4)] + [f"a{i}" for i in range(4)] + [f"d{i}" for i in range(6)]
    model = word_model({word: rng.normal(size=8).tolist() for word in words})
    train = Dataset.from_dict({"query": words[:4], "answer": words[4:8]})
    options = MiningConfig(num_negatives=3, margin=None, range_max=10)
    path = tmp_path / "train_triplets.jsonl"
    mined = mine_training_set(train, model, options, seed=1, extra_documents=words[8:], path=path)
    columns = ["query", "answer", "negative_1", "negative_2", "negative_3"]
    assert mined.triplets.column_names == columns and len(mined.triplets) == 4
    resumed = load_triplets(path)  # what a resumed run reads back
    assert resumed.column_names == columns and rows(resumed) == rows(mined.triplets)

    seen = []
    forward = MultipleNegativesRankingLoss.forward

    def counting_forward(self, sentence_features, *args, **kwargs):
        seen.append(len(sentence_features))
        return forward(self, sentence_features, *args, **kwargs)

    monkeypatch.setattr(MultipleNegativesRankingLoss, "forward", counting_forward)
    config = RunConfig(
        batch_size=2,
        training=TrainingConfig(bf16=False, max_steps=2, eval_steps=None, save_steps=100, report_to=[]),
    )
    result = train_model(model, resumed, None, None, config, str(tmp_path / "ckpt"), "cpu")
    assert result.global_step == 2
    assert seen and set(seen) == {5}  # query, answer and all three negatives in every step


def test_the_report_has_a_mining_section_and_plot(tmp_path):
    # "fn" is above the relative margin's line (0.76); "close" is below it but a near-duplicate of the positive
    # (cosine 0.56 + 0.6 * sqrt(0.5) = 0.98).
    close = [0.7, 0.0, 0.1, math.sqrt(0.5)]
    vectors = {"q": query_vector(0), "pos": at(0.8), "fn": at(0.78), "close": close, "other": at(0.5)}
    options = MiningConfig(margin=None, relative_margin=0.05, num_negatives=2)
    diagnostics = one_pair(vectors, options, ["fn", "close", "other"]).diagnostics
    (tmp_path / "mining.json").write_text(json.dumps(diagnostics.to_dict()))
    text = write_report(tmp_path, sample_metrics(), None).read_text()
    section = text[text.index("## Mining") :]
    assert "1 of 1 training pairs kept as rows of 2 negatives" in section
    assert "relative_margin 1 (33.3%)" in section  # fn, of three ranked candidates
    assert "1 of 2 negatives (50.0%)" in section
    assert "| query-positive | 1 | 0.800 |" in section
    assert f"]({PLOT_FILES['mining']})" in section
    assert (tmp_path / PLOT_FILES["mining"]).stat().st_size > 1000


def test_a_report_without_mining_json_has_no_mining_section(tmp_path):
    text = write_report(tmp_path, sample_metrics(), None).read_text()
    assert "## Mining" not in text and not (tmp_path / PLOT_FILES["mining"]).exists()


def unmined_fixture() -> tuple[dict[str, list[float]], Dataset, list[str]]:
    """qb's best candidates (y, x, pa) all score above its positive pb; z scores below it, out of a window of 1."""
    vectors = {
        "qa": query_vector(1),
        "pa": unit(0.5, 0.8),
        "qb": query_vector(0),
        "pb": unit(0.2, 0.0),
        "x": at(0.5),
        "y": at(0.6),
        "z": at(0.1),
    }
    return vectors, Dataset.from_dict({"query": ["qa", "qb"], "answer": ["pa", "pb"]}), ["x", "y", "z"]


def test_a_pair_without_a_valid_candidate_still_trains_as_an_in_batch_pair(tmp_path):
    vectors, train, extra = unmined_fixture()
    options = MiningConfig(margin=0.0, range_max=1)  # unmined_pairs: in_batch, the default
    mined = mine_training_set(train, word_model(vectors), options, 1, extra_documents=extra, pairs_path=tmp_path / "p")
    assert [row[0] for row in rows(mined.triplets)] == ["qa"]
    assert rows(mined.pairs) == [("qb", "pb")] and mined.pairs.column_names == ["query", "answer"]
    assert rows(load_triplets(tmp_path / "p")) == [("qb", "pb")]
    pairs = mined.diagnostics.to_dict()["pairs"]
    assert (pairs["without_negative"], pairs["kept_in_batch"], pairs["left_out"]) == (1, 1, 0)


def test_a_pair_without_a_valid_candidate_gets_a_seeded_random_negative_below_the_window():
    vectors, train, extra = unmined_fixture()
    options = MiningConfig(margin=0.0, range_max=1, unmined_pairs="random_negative")
    runs = [mine_training_set(train, word_model(vectors), options, 1, extra_documents=extra) for _ in range(2)]
    mined = runs[0]
    # qb searches 3 candidates (range_max, room for its positive and its own text): y, x and pa; z lies below.
    assert ("qb", "pb", "z") in rows(mined.triplets) and rows(runs[1].triplets) == rows(mined.triplets)
    assert mined.pairs is None
    pairs = mined.diagnostics.to_dict()["pairs"]
    assert (pairs["kept"], pairs["kept_with_random_negatives"], pairs["left_out"]) == (2, 1, 0)
    assert mined.diagnostics.to_dict()["random_negatives"] == 1
