"""What a column that is read must hold: text where a text is read, whole numbers where a grade is; a wrong value
stops the run with the file, the row, the column and what it holds, or is left out and counted with
skip_wrong_types. Nothing is ever turned into its Python text."""

from __future__ import annotations

import logging

import pytest

from embedft.config.schema import RunConfig
from embedft.data.beir import read_beir_folder
from embedft.data.prepared import prepare_data
from embedft.data.sources import load_corpus_file, load_pairs
from embedft.errors import DataError
from tests.conftest import write_jsonl

PAIRS = [{"query": f"q{i}", "answer": f"a{i}"} for i in range(6)]


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"text": "How long?"}, 'an object {"text": "How long?"}'),
        (["How", "long?"], 'a list ["How", "long?"]'),
        (42, "a number (42)"),
        (True, "true/false (true)"),
    ],
)
def test_a_query_that_is_not_text_names_the_file_row_column_and_type(tmp_path, value, found):
    path = write_jsonl(tmp_path / "pairs.jsonl", [*PAIRS[:2], {"query": value, "answer": "a"}])
    with pytest.raises(DataError) as error:
        load_pairs(str(path))
    assert str(error.value) == (
        f"{path} row 3: column 'query' holds {found}, not text: correct the row, or set skip_wrong_types: true to "
        "leave out such rows"
    )


def test_a_column_where_every_query_is_an_object_is_refused_at_its_first_row(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": {"text": f"q{i}"}, "answer": "a"} for i in range(3)])
    with pytest.raises(DataError, match="pairs.jsonl row 1: column 'query' holds an object"):
        load_pairs(str(path))


def test_an_answer_that_is_a_number_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [*PAIRS[:2], {"query": "q", "answer": 3.5}])
    with pytest.raises(
        DataError, match="row 3: column 'answer' holds a number \\(3.5\\), not a text, a list of texts"
    ):
        load_pairs(str(path))


def test_a_number_among_given_negatives_is_refused(tmp_path):
    rows = [{"query": "q1", "pos": ["a1"], "neg": ["n1", 7]}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match="row 1: column 'neg' holds a list holding a number \\(7\\)"):
        load_pairs(str(path))


def test_a_passage_title_that_is_not_text_is_refused(tmp_path):
    rows = [{"query": "q1", "positive_passages": [{"docid": "d1", "title": 2024, "text": "a1"}]}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(
        DataError, match="column 'positive_passages' holds a list holding an object .* \"title\" is no"
    ):
        load_pairs(str(path))


def test_answers_that_are_texts_in_some_rows_and_lists_in_others_are_read(tmp_path):
    rows = [{"query": "q1", "answer": "a1"}, {"query": "q2", "answer": ["a2", "a2b"]}]
    pairs = load_pairs(str(write_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert list(zip(pairs["query"], pairs["answer"])) == [("q1", "a1"), ("q2", "a2"), ("q2", "a2b")]


def test_a_split_column_must_hold_text(tmp_path):
    rows = [{**pair, "split": "train" if i < 4 else 1} for i, pair in enumerate(PAIRS)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match="row 5: column 'split' holds a number \\(1\\), not text"):
        prepare_data(RunConfig(dataset_name=str(path), split_column="split", test_size=None))


def test_a_relevance_grade_of_true_is_refused(tmp_path):
    rows = [{**pair, "grade": True if i == 2 else 1} for i, pair in enumerate(PAIRS)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match="row 3: column 'grade' holds true/false \\(true\\), not a whole number"):
        prepare_data(RunConfig(dataset_name=str(path), relevance_column="grade", test_size=2))


def test_skip_wrong_types_leaves_the_rows_out_and_counts_them(tmp_path, caplog):
    rows = [*PAIRS, {"query": {"text": "q9"}, "answer": "a9"}, {"query": "q10", "answer": False}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        data = prepare_data(RunConfig(dataset_name=str(path), test_size=2, skip_wrong_types=True))
    counts = data.counts()
    assert (counts["rows_loaded"], counts["wrong_type_dropped"], counts["train_pairs"] + counts["eval_pairs"]) == (
        8,
        2,
        6,
    )
    assert "left out 2 rows of" in caplog.text and "row 7: column 'query' holds an object" in caplog.text


def test_skipping_every_row_is_an_error_that_names_the_first(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": 1, "answer": "a"}, {"query": 2, "answer": "b"}])
    with pytest.raises(
        DataError, match="every row of .*pairs.jsonl holds a value of the wrong type \\(the first: row 1"
    ):
        prepare_data(RunConfig(dataset_name=str(path), test_size=1, skip_wrong_types=True))


def test_rows_left_out_are_counted_when_cleaning_leaves_nothing(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": 1, "answer": "a"}, {"query": " ", "answer": "b"}])
    with pytest.raises(DataError, match="empty after cleaning \\(2 rows: .*1 left out for a value of the wrong type"):
        prepare_data(RunConfig(dataset_name=str(path), test_size=1, skip_wrong_types=True))


def test_a_corpus_file_title_that_is_not_text_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "d1", "title": ["a", "b"]}])
    with pytest.raises(DataError, match='docs.jsonl line 1 \'title\' holds a list \\["a", "b"\\], not text'):
        load_corpus_file(str(path))


def test_a_beir_id_that_is_not_text_is_refused(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": 1, "title": "", "text": "d1"}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "q1"}])
    for split in ("train", "test"):
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match="corpus.jsonl line 1 '_id' holds a number \\(1\\), not text"):
        read_beir_folder(str(folder))


def test_a_beir_score_that_is_not_a_whole_number_is_refused_not_cut(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": "d1", "text": "d1"}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "q1"}])
    (folder / "qrels" / "train.tsv").write_text("q1\td1\t1.5\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match="train.tsv line 1: score '1.5' is not a whole number"):
        read_beir_folder(str(folder))
