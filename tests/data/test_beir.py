"""A BEIR folder read as it is, and the given-split protocol: shared answers kept by default, the held-out side never
changed by cleaning, and the seen/unseen breakdown of the test questions."""

import json

import pytest

from tests.conftest import write_jsonl

CORPUS = {f"d{i}": f"document {i} text" for i in range(1, 10)}
QUERIES = {f"q{i}": f"question {i}?" for i in range(1, 9)}
TRAIN_QRELS = [
    ("q1", "d1", 1),
    ("q1", "d1", 1),  # an exact duplicate within the train side
    ("q2", "d2", 1),
    ("q3", "d3", 1),  # d3 also answers test question q5: a shared document
    ("q4", "d4", 1),
    ("q6", "d6", 1),  # q6 is also a test question: its training copy must go
]
TEST_QRELS = [
    ("q5", "d3", 2),
    ("q5", "d5", 1),
    ("q6", "d7", 1),
    ("q7", "d8", 1),
    ("q7", "d2", 0),  # judged not relevant: no positive
]
DEV_QRELS = [("q8", "d9", 1)]


def write_qrels(path, rows) -> None:
    path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows), encoding="utf-8")


def write_beir_folder(folder, dev: bool = True):
    """A small BEIR folder: titled and untitled documents, a question on both sides, shared documents, an exact
    duplicate qrel and a qrel of score 0."""
    folder.mkdir()
    (folder / "qrels").mkdir()
    corpus = [{"_id": did, "title": "Title" if did == "d1" else "", "text": text} for did, text in CORPUS.items()]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", [{"_id": qid, "text": text} for qid, text in QUERIES.items()])
    write_qrels(folder / "qrels" / "train.tsv", TRAIN_QRELS)
    write_qrels(folder / "qrels" / "test.tsv", TEST_QRELS)
    if dev:
        write_qrels(folder / "qrels" / "dev.tsv", DEV_QRELS)
    return folder


def beir_config(folder, **overrides):
    from embedft.config.schema import RunConfig

    return RunConfig(dataset_name=str(folder), data_format="beir", test_size=None, **overrides)


def pairs(split) -> set[tuple[str, str]]:
    return set(zip(split["query"], split["answer"]))


def text(qid_or_did: str) -> str:
    """A query's text, or a document's as read: d1 has a title, joined as title + " " + text."""
    if qid_or_did in QUERIES:
        return QUERIES[qid_or_did]
    return ("Title " if qid_or_did == "d1" else "") + CORPUS[qid_or_did]


def test_a_beir_folder_reads_into_train_dev_and_test_with_its_corpus_as_the_pool(tmp_path):
    from embedft.data.prepared import prepare_data

    data = prepare_data(beir_config(write_beir_folder(tmp_path / "beir")))
    assert pairs(data.splits["train"]) == {(text(q), text(d)) for q, d, _ in TRAIN_QRELS if q != "q6"}
    assert pairs(data.splits["test"]) == {(text(q), text(d)) for q, d, s in TEST_QRELS if s > 0}
    assert pairs(data.splits["dev"]) == {(text("q8"), text("d9"))}
    assert "Title document 1 text" in data.corpus  # title + " " + text, as BEIR's own loader joins them
    assert set(data.corpus) == {text(did) for did in CORPUS}
    assert data.protocol() == {"split": "beir", "drop_shared": "questions"}


def test_by_default_a_given_split_keeps_training_pairs_that_share_an_answer_and_counts_them(tmp_path):
    from embedft.data.prepared import prepare_data

    data = prepare_data(beir_config(write_beir_folder(tmp_path / "beir")))
    counts = data.counts()
    assert (text("q3"), text("d3")) in pairs(data.splits["train"])  # d3 also answers test q5: kept
    assert counts["train_question_held_out_dropped"] == 1  # q6's training copy
    assert counts["train_pairs_sharing_an_answer"] == 1 and counts["train_overlap_dropped"] == 1
    assert counts["duplicates_dropped"] == 1  # the repeated qrel, within the train side
    # The documents are shared: held-out answers are training negatives too.
    assert text("d5") in data.training_documents and not data.protected_answers


def test_questions_and_answers_drops_pairs_that_share_an_answer_as_before(tmp_path):
    from embedft.data.prepared import prepare_data

    data = prepare_data(beir_config(write_beir_folder(tmp_path / "beir"), drop_shared="questions_and_answers"))
    assert (text("q3"), text("d3")) not in pairs(data.splits["train"])
    assert data.counts()["train_overlap_dropped"] == 2
    assert text("d5") not in data.training_documents and text("d5") in data.protected_answers


def test_a_question_on_both_sides_leaves_training_and_the_test_side_keeps_every_question(tmp_path):
    from embedft.data.prepared import prepare_data

    data = prepare_data(beir_config(write_beir_folder(tmp_path / "beir")))
    assert text("q6") not in data.splits["train"]["query"]
    assert set(data.splits["test"]["query"]) == {text("q5"), text("q6"), text("q7")}


def test_cleaning_never_moves_a_pair_out_of_the_test_side_of_a_split_column(tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    rows = [{"query": f"q{i}", "answer": f"a{i}", "split": "train"} for i in range(6)]
    rows += [{"query": "q0", "answer": "a0", "split": "test"}, {"query": "t1", "answer": "b1", "split": "test"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    data = prepare_data(RunConfig(dataset_name=str(path), split_column="split", test_size=None))
    assert set(data.splits["test"]["query"]) == {"q0", "t1"}  # the duplicate of a training pair stays on test
    assert "q0" not in data.splits["train"]["query"]  # and its training copy goes


def test_the_seen_and_unseen_groups_count_the_test_questions_by_their_answers(tmp_path):
    from embedft.data.prepared import prepare_data
    from embedft.evaluation.retrieval import SEEN_ANSWERS, UNSEEN_ANSWERS, build_retrieval_task

    data = prepare_data(beir_config(write_beir_folder(tmp_path / "beir")))
    task = build_retrieval_task(data.splits["test"], data.corpus, data.trained_answers)
    groups = {name: {task.queries[qid] for qid in ids} for name, ids in task.answer_groups().items()}
    assert groups == {SEEN_ANSWERS: {text("q5")}, UNSEEN_ANSWERS: {text("q6"), text("q7")}}
    assert task.graded  # q5's d3 has grade 2
    q5 = next(qid for qid, query in task.queries.items() if query == text("q5"))
    assert sorted(task.grades[q5].values()) == [1, 2]


def test_a_random_split_puts_every_test_question_in_the_unseen_group(tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data
    from embedft.evaluation.retrieval import build_retrieval_task

    rows = [{"query": f"q{i}", "answer": f"a{i // 2}"} for i in range(20)]  # pairs of questions share an answer
    data = prepare_data(RunConfig(dataset_name=str(write_jsonl(tmp_path / "p.jsonl", rows)), test_size=4))
    task = build_retrieval_task(data.splits["test"], data.corpus, data.trained_answers)
    assert not task.seen and len(task.answer_groups()["unseen_answers"]) == 4
    assert data.protocol()["split"] == "random" and "drop_shared" not in data.protocol()
    assert "train_pairs_sharing_an_answer" not in data.counts()


def test_a_beir_folder_reads_into_the_same_splits_as_the_flat_files(tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data

    folder = write_beir_folder(tmp_path / "beir", dev=False)
    rows = [
        {"query": text(q), "answer": text(d), "split": split, "grade": score}
        for split, qrels in (("train", TRAIN_QRELS), ("test", TEST_QRELS))
        for q, d, score in qrels
    ]
    flat = write_jsonl(tmp_path / "pairs.jsonl", rows)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [json.loads(line) for line in (folder / "corpus.jsonl").open()])
    beir = prepare_data(beir_config(folder))
    pairs_file = prepare_data(
        RunConfig(
            dataset_name=str(flat),
            split_column="split",
            relevance_column="grade",
            corpus_file=str(corpus),
            test_size=None,
        )
    )
    for name in ("train", "test"):
        assert pairs(beir.splits[name]) == pairs(pairs_file.splits[name])
        assert sorted(beir.splits[name]["relevance"]) == sorted(pairs_file.splits[name]["relevance"])
    assert sorted(beir.corpus) == sorted(pairs_file.corpus)
    assert beir.counts() == pairs_file.counts()


@pytest.mark.parametrize(
    ("remove", "message"),
    [("corpus.jsonl", "has no corpus.jsonl"), ("qrels/train.tsv", "has no qrels/train.tsv")],
)
def test_a_beir_folder_without_a_required_file_is_refused_in_one_line(tmp_path, remove, message):
    from embedft.data.prepared import prepare_data
    from embedft.errors import DataError

    folder = write_beir_folder(tmp_path / "beir")
    (folder / remove).unlink()
    with pytest.raises(DataError, match=message):
        prepare_data(beir_config(folder))


def test_beir_refuses_the_keys_of_flat_files(tmp_path):
    from embedft.config.parsing import load_config
    from embedft.errors import ConfigError

    config = tmp_path / "c.yaml"
    config.write_text("dataset_name: somewhere\ndata_format: beir\nsplit_column: split\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'split_column' is set but data_format is beir"):
        load_config(str(config))


def test_a_relevance_column_must_hold_whole_numbers(tmp_path):
    from embedft.config.schema import RunConfig
    from embedft.data.prepared import prepare_data
    from embedft.errors import DataError

    rows = [{"query": f"q{i}", "answer": f"a{i}", "grade": 1.5 if i == 3 else 1} for i in range(10)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError, match=r"p.jsonl row 4: column 'grade' holds a number \(1.5\), not a whole number"):
        prepare_data(RunConfig(dataset_name=str(path), relevance_column="grade", test_size=2))
