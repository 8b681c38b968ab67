"""Data: loading from every source, cleaning, the seeded sample and split."""

from __future__ import annotations

import os
import time

import pytest

import embedft.data.files
from embedft.data.rows import clean_pairs
from embedft.data.sources import load_pairs
from embedft.data.split import sample_pairs, split_pairs
from embedft.errors import DataError
from tests.conftest import write_jsonl


def test_packaged_faq_has_503_english_pairs(faq_pairs):
    assert len(faq_pairs) == 503
    assert faq_pairs.column_names[:2] == ["query", "answer"]
    assert "building permit" in " ".join(faq_pairs["query"][:5])


def test_local_files_with_mapped_columns(tmp_path):
    rows = [{"question": f"q{i}", "reply": f"a{i}", "split": "train"} for i in range(5)]
    jsonl = write_jsonl(tmp_path / "pairs.jsonl", rows)
    from datasets import Dataset

    Dataset.from_list(rows).to_csv(tmp_path / "pairs.csv")
    Dataset.from_list(rows).to_parquet(tmp_path / "pairs.parquet")
    for path in (jsonl, tmp_path / "pairs.csv", tmp_path / "pairs.parquet"):
        pairs = load_pairs(str(path), query_column="question", answer_column="reply")
        assert pairs.column_names == ["query", "answer", "split"]
        assert pairs[0]["query"] == "q0" and pairs[0]["answer"] == "a0"


def test_missing_column_names_the_columns_and_the_key(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        DataError, match="column 'query' not found .* \\(columns: question, answer\\): set query_column"
    ):
        load_pairs(str(path))


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(str(tmp_path / "nope.jsonl"))
    (tmp_path / "pairs.xml").write_text("<x/>")
    with pytest.raises(DataError, match="unsupported extension '.xml'"):
        load_pairs(str(tmp_path / "pairs.xml"))


def test_not_utf8_file_is_a_data_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"query": "ok", "answer": "x"}\n{"query": "caf\xe9", "answer": "x"}\n')
    with pytest.raises(DataError, match="is not UTF-8 text \\(line 2\\): save it as UTF-8"):
        load_pairs(str(path))


def test_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "answer": "a"}])
    if os.geteuid() == 0:  # root reads a chmod 000 file anyway (CI runs as root): make the read itself fail

        def denied(path):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(embedft.data.files, "check_utf8", denied)
    else:
        path.chmod(0)
    with pytest.raises(DataError, match="cannot read .*pairs.jsonl: permission denied"):
        load_pairs(str(path))


def test_malformed_json_line_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "q", "answer": "a"}\n{"query": "q2", "answer": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_pairs(str(path))


def test_cleaning_drops_empty_and_duplicate_pairs_and_counts_them(tmp_path):
    rows = [
        {"query": "q1", "answer": "a1"},
        {"query": " q1 ", "answer": "a1"},  # duplicate once stripped
        {"query": "", "answer": "a2"},
        {"query": "q3", "answer": None},
        {"query": "q4", "answer": "a4"},
    ]
    pairs, stats = clean_pairs(load_pairs(str(write_jsonl(tmp_path / "p.jsonl", rows))))
    assert pairs["query"] == ["q1", "q4"]
    assert (stats.rows_in, stats.empty_dropped, stats.duplicates_dropped, stats.rows_out) == (5, 2, 1, 2)


def test_cleaning_everything_away_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"query": " ", "answer": "a"}])
    with pytest.raises(DataError, match="empty after cleaning"):
        clean_pairs(load_pairs(str(path)))


def test_split_is_identical_for_the_same_seed_and_differs_for_another(faq_pairs):
    first = split_pairs(faq_pairs, 50, seed=12)
    again = split_pairs(faq_pairs, 50, seed=12)
    other = split_pairs(faq_pairs, 50, seed=13)
    assert first["test"]["query"] == again["test"]["query"]
    assert first["train"]["query"] == again["train"]["query"]
    assert set(first["test"]["query"]) != set(other["test"]["query"])
    assert len(set(first["test"]["query"])) == 50


def test_split_keeps_all_answers_of_a_question_on_one_side():
    from datasets import Dataset

    pairs = Dataset.from_dict({"query": ["a", "a", "b", "c", "c", "d"], "answer": ["1", "2", "3", "4", "5", "6"]})
    for seed in range(5):
        splits = split_pairs(pairs, 2, seed)
        assert not set(splits["train"]["query"]) & set(splits["test"]["query"])
        assert len(splits["train"]) + len(splits["test"]) == 6


def test_test_size_must_leave_training_data(faq_pairs):
    with pytest.raises(DataError, match="must be smaller than the number of distinct questions"):
        split_pairs(faq_pairs, len(faq_pairs), seed=1)


def test_sample_is_seeded_and_larger_sample_uses_all(faq_pairs):
    assert sample_pairs(faq_pairs, 40, 1)["query"] == sample_pairs(faq_pairs, 40, 1)["query"]
    assert len(sample_pairs(faq_pairs, 40, 1)) == 40
    assert len(sample_pairs(faq_pairs, 10_000, 1)) == len(faq_pairs)


def test_hub_data_set_not_cached_fails_fast_offline(tmp_path):
    started = time.perf_counter()
    with pytest.raises(DataError, match="'someone/missing-set' is not in .* needs a network connection"):
        load_pairs("someone/missing-set", cache_dir=str(tmp_path))
    assert time.perf_counter() - started < 20


def test_hub_data_set_loads_from_a_cache_laid_out_like_the_hub(tmp_path):
    # What huggingface_hub leaves after downloading ayushexel/xyneft: blobs under snapshots/<commit>/.
    repo = tmp_path / "datasets--ayushexel--xyneft"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    (snapshot / "data").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    write_jsonl(snapshot / "data" / "train.jsonl", [{"query": f"q{i}", "answer": f"a{i}"} for i in range(4)])
    pairs = load_pairs("ayushexel/xyneft", cache_dir=str(tmp_path))
    assert pairs["query"] == ["q0", "q1", "q2", "q3"]


def config_for(path, **overrides):
    from embedft.config.schema import RunConfig

    return RunConfig(dataset_name=str(path), query_column="question", answer_column="reply", **overrides)


def rows_with_split(n_train: int, n_test: int) -> list[dict]:
    rows = [{"question": f"train q{i}", "reply": f"train a{i}", "split": "train"} for i in range(n_train)]
    rows += [{"question": f"test q{i}", "reply": f"test a{i}", "split": "test"} for i in range(n_test)]
    rows.append({"question": "dev q", "reply": "dev a", "split": "dev"})
    return rows


def test_split_column_uses_the_datas_own_split(tmp_path):
    from embedft.data.prepared import prepare_data

    path = write_jsonl(tmp_path / "pairs.jsonl", rows_with_split(30, 8))
    data = prepare_data(config_for(path, split_column="split", sample_size=10, test_size=None))
    assert set(data.splits["test"]["query"]) == {f"test q{i}" for i in range(8)}
    assert len(data.splits["train"]) == 10 and all(q.startswith("train") for q in data.splits["train"]["query"])
    assert len(data.corpus) == 38  # every train and test answer, not only the sampled ones (the dev row is left out)
    capped = prepare_data(config_for(path, split_column="split", test_size=3))
    assert len(capped.splits["test"]) == 3


def test_split_column_errors_name_the_fix(tmp_path):
    from embedft.data.prepared import prepare_data

    path = write_jsonl(tmp_path / "pairs.jsonl", rows_with_split(5, 2))
    with pytest.raises(DataError, match="split_column 'fold' not found"):
        prepare_data(config_for(path, split_column="fold"))
    with pytest.raises(DataError, match="no rows with split == 'validation' .*: set test_split_value"):
        prepare_data(config_for(path, split_column="split", test_split_value="validation"))
    with pytest.raises(DataError, match="test_size=0.01 holds out no question of 2"):
        prepare_data(config_for(path, split_column="split", test_size=0.01))


def test_separate_eval_file(tmp_path):
    from embedft.data.prepared import prepare_data

    train = write_jsonl(tmp_path / "train.jsonl", [{"question": f"q{i}", "reply": f"a{i}"} for i in range(6)])
    test = write_jsonl(tmp_path / "test.jsonl", [{"question": "tq", "reply": "ta"}])
    data = prepare_data(config_for(train, eval_dataset_name=str(test)))
    assert data.splits["test"]["query"] == ["tq"] and len(data.splits["train"]) == 6
    assert "ta" in data.corpus


def test_corpus_file_adds_documents_in_jsonl_and_txt(tmp_path):
    from embedft.data.prepared import prepare_data
    from embedft.data.sources import load_corpus_file

    jsonl = write_jsonl(tmp_path / "docs.jsonl", [{"title": "Permits", "text": "Apply online."}, {"text": "Other."}])
    assert load_corpus_file(str(jsonl)) == ["Permits Apply online.", "Other."]
    txt = tmp_path / "docs.txt"
    txt.write_text("first doc\n\nsecond doc\nfirst doc\n", encoding="utf-8")
    assert load_corpus_file(str(txt)) == ["first doc", "second doc"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"question": f"q{i}", "reply": f"a{i}"} for i in range(6)])
    data = prepare_data(config_for(pairs, test_size=2, corpus_file=str(txt)))
    assert data.extra_documents == ["first doc", "second doc"]
    assert data.corpus[-2:] == ["first doc", "second doc"] and len(data.corpus) == 8


def test_corpus_file_errors(tmp_path):
    from embedft.data.sources import load_corpus_file

    with pytest.raises(DataError, match="does not exist"):
        load_corpus_file(str(tmp_path / "missing.txt"))
    bad = write_jsonl(tmp_path / "docs.jsonl", [{"body": "no text field"}])
    with pytest.raises(DataError, match="line 1 has no 'text'"):
        load_corpus_file(str(bad))


def test_sample_size_larger_than_the_data_warns_and_uses_all(faq_pairs, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        assert len(sample_pairs(faq_pairs, 600, 1)) == len(faq_pairs)
    assert "sample_size=600 is larger than the training side (503 pairs): using all of them" in caplog.text


def shared_answer_pairs():
    """Five pairs of questions that share an answer, and ten questions with answers of their own."""
    from datasets import Dataset

    queries, answers = [], []
    for group in range(5):
        queries += [f"shared q{group}a", f"shared q{group}b"]
        answers += [f"shared answer {group}"] * 2
    queries += [f"single q{i}" for i in range(10)]
    answers += [f"single answer {i}" for i in range(10)]
    return Dataset.from_dict({"query": queries, "answer": answers})


def test_questions_that_share_an_answer_stay_on_one_side_of_the_split():
    pairs = shared_answer_pairs()
    for seed in range(10):
        splits = split_pairs(pairs, 5, seed)
        assert len(set(splits["test"]["query"])) == 5
        assert not set(splits["train"]["query"]) & set(splits["test"]["query"])
        assert not set(splits["train"]["answer"]) & set(splits["test"]["answer"]), seed


def test_question_groups_join_questions_through_shared_answers():
    from datasets import Dataset

    from embedft.data.split import question_groups

    pairs = Dataset.from_dict({"query": ["a", "b", "b", "c", "d"], "answer": ["1", "1", "2", "2", "3"]})
    assert sorted(sorted(group) for group in question_groups(pairs)) == [["a", "b", "c"], ["d"]]


def overlapping_rows() -> list[dict]:
    """A split column whose train side shares one question and one answer text with its test side."""
    rows = [{"question": f"train q{i}", "reply": f"train a{i}", "split": "train"} for i in range(10)]
    rows += [{"question": f"test q{i}", "reply": f"test a{i}", "split": "test"} for i in range(4)]
    rows.append({"question": "test q0", "reply": "another answer", "split": "train"})  # same question
    rows.append({"question": "other q", "reply": "test a1", "split": "train"})  # same answer
    return rows


def test_a_given_split_drops_training_pairs_whose_question_is_held_out_and_keeps_shared_answers(tmp_path):
    from embedft.data.prepared import prepare_data

    path = write_jsonl(tmp_path / "pairs.jsonl", overlapping_rows())
    data = prepare_data(config_for(path, split_column="split", test_size=None))
    train = data.splits["train"]
    assert len(train) == 11 and data.shared.question_dropped == 1
    assert not set(train["query"]) & set(data.splits["test"]["query"])
    assert ("other q", "test a1") in zip(train["query"], train["answer"])  # shares only an answer: kept
    counts = data.counts()
    assert counts["train_overlap_dropped"] == 1 and counts["train_pairs_sharing_an_answer"] == 1
    assert "another answer" in data.corpus  # still ranked, as nobody's positive


def test_questions_and_answers_drops_training_pairs_that_share_any_text_with_the_test_side(tmp_path):
    from embedft.data.prepared import prepare_data

    path = write_jsonl(tmp_path / "pairs.jsonl", overlapping_rows())
    data = prepare_data(config_for(path, split_column="split", test_size=None, drop_shared="questions_and_answers"))
    train = data.splits["train"]
    assert len(train) == 10 and data.counts()["train_overlap_dropped"] == 2
    assert not set(train["answer"]) & set(data.splits["test"]["answer"])
    protocol = data.protocol()
    assert (protocol["split"], protocol["drop_shared"]) == ("split_column", "questions_and_answers")


def test_a_separate_eval_file_drops_overlapping_training_pairs(tmp_path):
    from embedft.data.prepared import prepare_data

    rows = overlapping_rows()
    train = write_jsonl(tmp_path / "train.jsonl", [r for r in rows if r["split"] == "train"])
    test = write_jsonl(tmp_path / "test.jsonl", [r for r in rows if r["split"] == "test"])
    data = prepare_data(config_for(train, eval_dataset_name=str(test)))
    assert data.shared.dropped == 1 and len(data.splits["train"]) == 11
    strict = prepare_data(config_for(train, eval_dataset_name=str(test), drop_shared="questions_and_answers"))
    assert strict.shared.dropped == 2 and len(strict.splits["train"]) == 10


def test_corpus_file_answers_of_held_out_questions_are_never_training_negatives(tmp_path):
    from embedft.data.prepared import prepare_data

    rows = [{"question": f"q{i}", "reply": f"a{i}"} for i in range(20)]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    collection = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"a{i}"} for i in range(20)] + [{"text": "extra"}])
    data = prepare_data(config_for(pairs, test_size=4, dev_size=3, corpus_file=str(collection)))
    held_out = set(data.splits["test"]["answer"]) | set(data.splits["dev"]["answer"])
    assert len(held_out) == 7
    assert not held_out & set(data.training_documents)
    assert "extra" in data.training_documents and held_out <= set(data.corpus)
    assert data.counts()["corpus_file_held_out"] == 7


def test_the_evaluation_set_does_not_depend_on_sample_size(faq_pairs, tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    everything = prepare_data(RunConfig(test_size=30))
    sampled = prepare_data(RunConfig(test_size=30, sample_size=100))
    assert sampled.splits["test"]["query"] == everything.splits["test"]["query"]
    assert len(sampled.splits["train"]) == 100
    assert set(sampled.splits["train"]["query"]) <= set(everything.splits["train"]["query"])


def test_dev_questions_come_from_the_training_side_and_leave_the_test_set_alone():
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    without = prepare_data(RunConfig(test_size=30))
    data = prepare_data(RunConfig(test_size=30, dev_size=20))
    train, dev, test = (data.splits[name] for name in ("train", "dev", "test"))
    assert test["query"] == without.splits["test"]["query"]
    assert len(set(dev["query"])) == 20
    for first, second in ((train, dev), (train, test), (dev, test)):
        assert not set(first["query"]) & set(second["query"])
        assert not set(first["answer"]) & set(second["answer"])
    assert len(train) + len(dev) == len(without.splits["train"])
    assert data.counts()["dev_questions"] == 20


def test_the_split_fingerprint_is_streamed_and_equals_the_one_string_hash():
    # Runs fingerprinted before the streaming version must still resume: the value is unchanged.
    import hashlib
    import json

    from embedft.data.rows import pairs_digest

    queries, answers = ["b?", "a?", 'ü "x"?'], ["one", "two", "three"]
    expected = hashlib.sha256(json.dumps(sorted(zip(queries, answers))).encode("utf-8")).hexdigest()
    assert pairs_digest(queries, answers) == expected
    assert pairs_digest(list(reversed(queries)), list(reversed(answers))) == expected


def test_dev_size_auto_holds_out_5_percent_of_a_large_training_side_at_most_500(tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    rows = [{"query": f"question {i}?", "answer": f"answer {i}."} for i in range(1_300)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    data = prepare_data(RunConfig(dataset_name=str(path), test_size=100))  # dev_size: auto, the default
    assert data.counts()["dev_questions"] == 60  # 5% of the 1,200 training questions
    assert data.protocol()["dev"] == "60 questions (5% of 1,200, at most 500)"
    assert len(data.splits["train"]) == 1_140
    # The same data with every question asked twice: 2,400 pairs, still 5% of 1,200 questions.
    twice = rows + [{"query": row["query"], "answer": row["answer"] + " Also."} for row in rows]
    data = prepare_data(RunConfig(dataset_name=str(write_jsonl(tmp_path / "twice.jsonl", twice)), test_size=100))
    assert data.counts()["dev_questions"] == 60 and data.counts()["dev_pairs"] == 120


def test_dev_size_auto_holds_out_nothing_from_a_small_training_side_and_says_why(faq_pairs):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    data = prepare_data(RunConfig())  # the packaged FAQ: about 400 training pairs
    assert "dev" not in data.splits
    assert data.protocol()["dev"].startswith("none: the training side has 401 pairs, fewer than 1,000")
    assert "dev" not in prepare_data(RunConfig(dev_size=None)).protocol()
    assert prepare_data(RunConfig(dev_size=20)).counts()["dev_questions"] == 20
