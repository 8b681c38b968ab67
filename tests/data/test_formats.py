"""Data formats: FlagEmbedding and Tevatron rows, negatives given by the data, and hub subsets and revisions."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from datasets import Dataset

from embedft.columns import GIVEN_NEGATIVES
from embedft.config.parsing import load_config
from embedft.config.schema import MiningConfig
from embedft.data.prepared import prepare_data
from embedft.data.rows import clean_pairs
from embedft.data.sources import load_pairs
from embedft.data.split import hold_out_questions
from embedft.errors import ConfigError, DataError, OutputError
from embedft.mining.given import choose_given, given_negatives_training_set, read_given_negatives
from embedft.run.files import RunFiles
from tests.conftest import query_vector, unit, word_model, write_jsonl

FLAG_ROWS = [
    {"query": "q1", "pos": ["a1", "a1b"], "neg": ["n1", "n2"], "pos_scores": [1.0, 0.9], "prompt": "Represent: "},
    {"query": "q2", "pos": ["a2"], "neg": []},
]
TEVATRON_ROWS = [
    {
        "query_id": "7",
        "query": "q1",
        "positive_passages": [{"docid": "d1", "title": "Permits", "text": "a1"}],
        "negative_passages": [
            {"docid": "d2", "title": "", "text": "n1"},
            {"docid": "d3", "title": "Fees", "text": "n2"},
        ],
    }
]


def rows_of(dataset: Dataset) -> list[dict]:
    return [dict(row) for row in dataset]


# Reading the formats


def test_flagembedding_row_gives_one_pair_per_positive_with_the_rows_negatives(tmp_path):
    pairs = load_pairs(str(write_jsonl(tmp_path / "train.jsonl", FLAG_ROWS)))
    assert pairs.column_names == ["query", "answer", GIVEN_NEGATIVES, "prompt"]  # pos_scores (a list) is left out
    assert [(r["query"], r["answer"], r[GIVEN_NEGATIVES]) for r in rows_of(pairs)] == [
        ("q1", "a1", ["n1", "n2"]),
        ("q1", "a1b", ["n1", "n2"]),
        ("q2", "a2", []),
    ]


def test_tevatron_passages_are_title_space_text_or_the_text_alone(tmp_path):
    pairs = load_pairs(str(write_jsonl(tmp_path / "train.jsonl", TEVATRON_ROWS)))
    assert rows_of(pairs) == [
        {"query": "q1", "answer": "Permits a1", GIVEN_NEGATIVES: ["n1", "Fees n2"], "query_id": "7"}
    ]


def test_auto_reads_a_file_with_the_answer_column_as_plain_pairs(tmp_path):
    rows = [{"query": "q", "answer": "a", "pos": ["ignored"]}]
    pairs = load_pairs(str(write_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert pairs.column_names == ["query", "answer", "pos"] and pairs[0]["answer"] == "a"


def test_auto_keeps_pairs_when_the_user_named_a_pair_column(tmp_path):
    path = str(write_jsonl(tmp_path / "train.jsonl", FLAG_ROWS))
    # A misspelt answer column is reported, not silently replaced by the file's FlagEmbedding 'pos'.
    with pytest.raises(DataError, match="reply"):
        load_pairs(path, answer_column="reply")
    with pytest.raises(DataError, match="answer"):
        load_pairs(path, negative_column="neg")


def test_a_row_without_positives_is_dropped_as_empty_and_counted(tmp_path):
    rows = [*FLAG_ROWS, {"query": "q3", "pos": [], "neg": ["n3"]}]
    pairs, stats = clean_pairs(load_pairs(str(write_jsonl(tmp_path / "train.jsonl", rows))))
    assert stats.empty_dropped == 1 and "q3" not in pairs["query"]


def test_a_list_of_answers_in_pairs_data_gives_one_pair_each_and_negative_column_reads_texts_or_lists(tmp_path):
    rows = [
        {"question": "q1", "answers": ["a1", "a2"], "hard": "n1"},
        {"question": "q2", "answers": ["a3"], "hard": ["n2", "n3"]},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    pairs = load_pairs(str(path), "question", "answers", negative_column="hard")
    assert [(r["query"], r["answer"], r[GIVEN_NEGATIVES]) for r in rows_of(pairs)] == [
        ("q1", "a1", ["n1"]),
        ("q1", "a2", ["n1"]),
        ("q2", "a3", ["n2", "n3"]),
    ]


def test_lists_written_as_text_in_a_csv_are_refused_in_one_line(tmp_path):
    Dataset.from_list([{"query": f"q{i}", "answer": str([f"a{i}", f"b{i}"])} for i in range(3)]).to_csv(
        tmp_path / "pairs.csv"
    )
    with pytest.raises(
        DataError, match="column 'answer' of .*pairs.csv holds lists written as text .*: save the data"
    ):
        load_pairs(str(tmp_path / "pairs.csv"))


def test_a_query_column_of_lists_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": ["q1", "q2"], "answer": "a"}])
    with pytest.raises(DataError, match="column 'query' of .* holds lists, and a question is one text"):
        load_pairs(str(path))


def test_an_explicit_format_without_its_columns_names_them(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "answer": "a"}])
    with pytest.raises(DataError, match="column 'positive_passages' not found .*Tevatron rows need"):
        load_pairs(str(path), data_format="tevatron")


def test_an_item_that_is_neither_text_nor_passage_is_named(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos": [{"docid": "d"}], "neg": []}])
    with pytest.raises(
        DataError, match="train.jsonl row 1: column 'pos' holds a list holding an object .* no \"text\""
    ):
        load_pairs(str(path))


# The split keeps a question's positives together


def test_a_question_with_several_positives_is_held_out_with_all_of_them(tmp_path):
    rows = [{"query": f"q{i}", "pos": [f"a{i}", f"b{i}", f"c{i}"], "neg": []} for i in range(10)]
    rows.append({"query": "q10", "pos": ["a0"], "neg": []})  # shares an answer with q0: held out with it
    pairs, _ = clean_pairs(load_pairs(str(write_jsonl(tmp_path / "train.jsonl", rows))))
    for seed in range(5):
        rest, held_out = hold_out_questions(pairs, 3, seed)
        assert not set(rest["query"]) & set(held_out["query"])
        assert not set(rest["answer"]) & set(held_out["answer"])
        assert all(held_out["query"].count(q) == (3 if q != "q10" else 1) for q in set(held_out["query"]))
        assert ("q0" in held_out["query"]) == ("q10" in held_out["query"])


# Given negatives: filtered, chosen, used or mixed


def test_given_negatives_that_are_a_positive_or_a_held_out_answer_are_dropped_and_counted():
    train = Dataset.from_dict(
        {
            "query": ["q1", "q1", "q2"],
            "answer": ["a1", "a1b", "a2"],
            GIVEN_NEGATIVES: [["a1b", " n1 ", "n1", "", "t1"], ["a1", "n1"], ["a1", "a2x"]],
        }
    )
    known = Dataset.from_dict({"query": ["q2", "q9"], "answer": ["a2x", "t1"]})  # q2's answer in the eval file
    given = read_given_negatives(train, known, held_out_answers={"t1"})
    # q1: a1b is its own other answer, t1 a held-out answer; q2: a2x its answer elsewhere; a1 is q1's, fine for q2.
    assert given.lists == [["n1"], ["n1"], ["a1"]]
    assert (given.read, given.dropped_positive, given.dropped_held_out) == (7, 3, 1)


def test_choose_given_takes_the_first_or_a_seeded_sample_in_the_datas_order():
    negatives = [f"n{i}" for i in range(10)]
    assert choose_given(negatives, 3, "top", random.Random(0)) == ["n0", "n1", "n2"]
    first, second = (choose_given(negatives, 3, "random", random.Random(5)) for _ in range(2))
    assert first == second and first == sorted(first, key=negatives.index) and len(set(first)) == 3
    assert choose_given(negatives[:2], 3, "top", random.Random(0)) == ["n0", "n1"]


def given_train() -> tuple[Dataset, object]:
    train = Dataset.from_dict(
        {"query": ["qa", "qb"], "answer": ["pa", "pb"], GIVEN_NEGATIVES: [["pb"], ["g1", "g2", "g3"]]}
    )
    return train, read_given_negatives(train, train, set())


def test_a_pair_short_of_given_negatives_trains_as_an_in_batch_pair():
    train, given = given_train()
    options = MiningConfig(num_negatives=2, given_negatives="use")  # unmined_pairs: in_batch, the default
    result = given_negatives_training_set(train, given, None, options, seed=1)
    assert rows_of(result.pairs) == [{"query": "qa", "answer": "pa"}]
    pairs = result.diagnostics.to_dict()["pairs"]
    assert (pairs["kept"], pairs["kept_in_batch"], pairs["left_out"]) == (1, 1, 0)


def test_use_takes_only_given_negatives_and_leaves_short_pairs_out_without_mining(caplog):
    train, given = given_train()
    options = MiningConfig(num_negatives=2, given_negatives="use", unmined_pairs="drop")
    with caplog.at_level(logging.WARNING, logger="embedft.mining"):
        result = given_negatives_training_set(train, given, None, options, seed=1)  # no model: nothing is mined
    assert result.triplets.column_names == ["query", "answer", "negative_1", "negative_2"]
    assert rows_of(result.triplets) == [{"query": "qb", "answer": "pb", "negative_1": "g1", "negative_2": "g2"}]
    diagnostics = result.diagnostics.to_dict()
    assert diagnostics["search"] == "none" and result.pairs is None
    pairs = diagnostics["pairs"]
    assert (pairs["total"], pairs["kept"], pairs["without_negative"], pairs["too_few_negatives"]) == (2, 1, 0, 1)
    assert pairs["left_out"] == 1
    assert diagnostics["given_negatives"]["used"] == 2 and diagnostics["given_negatives"]["pairs_mined"] == 0
    assert any("1 of 2 training pairs have fewer than" in r.getMessage() for r in caplog.records)


def test_use_with_no_pair_having_enough_is_a_data_error():
    train, given = given_train()
    with pytest.raises(DataError, match="no training pair has mining.num_negatives=4 given negatives"):
        given_negatives_training_set(train, given, None, MiningConfig(num_negatives=4, given_negatives="use"), 1)


def test_mix_fills_a_short_pair_with_mined_negatives_after_its_given_ones():
    # qa has one given negative (pb, which mining would also rank first): the best other mined one, x, fills up.
    vectors = {
        "qa": query_vector(1),
        "pa": unit(0.0, 0.9),
        "pb": unit(0.0, 0.8),
        "x": unit(0.0, 0.5),
        "y": unit(0.0, 0.1),
    }
    vectors |= {"qb": query_vector(0), "g1": query_vector(2), "g2": query_vector(2), "g3": query_vector(2)}
    train, given = given_train()
    options = MiningConfig(num_negatives=2, given_negatives="mix", margin=None)
    result = given_negatives_training_set(
        train, given, word_model(vectors), options, seed=1, extra_documents=["x", "y"]
    )
    assert [tuple(row.values()) for row in rows_of(result.triplets)] == [
        ("qa", "pa", "pb", "x"),
        ("qb", "pb", "g1", "g2"),
    ]
    counts = result.diagnostics.to_dict()["given_negatives"]
    assert (counts["used"], counts["mined_used"], counts["pairs_mined"]) == (3, 1, 1)
    assert result.diagnostics.search == "exact"


# End to end: a FlagEmbedding file through prepare_data and mine_stage


def flag_run(tmp_path: Path, *overrides: str):
    topics = ["permit", "fence", "garage", "roof", "window", "balcony", "drainage", "solar panel"]
    rows = [
        {
            "query": f"Do I need a permit for a {topic}?",
            "pos": [f"A {topic} needs a building permit from the municipality."],
            "neg": [f"GIVEN: a {topic} catalogue lists prices.", "Demolition needs a notification."],
        }
        for topic in topics
    ]
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    eval_file = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"query": "Who approves demolition?", "answer": "Demolition needs a notification."}]
        + [
            {"query": f"How tall may a {t} be?", "answer": f"A {t} may be two metres tall."} for t in ("hedge", "wall")
        ],
    )
    config = load_config(
        None,
        [f"dataset_name={train_file}", f"eval_dataset_name={eval_file}", "test_size=null", *overrides],
    )
    return config, prepare_data(config)


def test_flagembedding_negatives_reach_the_training_rows_and_a_resumed_run_reuses_them(tmp_path, minilm, monkeypatch):
    import embedft.run.stages
    from embedft.models.embedding_cache import EmbeddingCache
    from embedft.run.stages import mine_stage

    config, data = flag_run(tmp_path, "mining.given_negatives=use", "drop_shared=questions_and_answers")
    assert data.counts()["train_pairs_with_given_negatives"] == 8
    files = RunFiles(tmp_path / "run")
    files.data_dir.mkdir(parents=True)
    cache = EmbeddingCache(tmp_path / "embeddings")
    triplets = mine_stage(files, data, minilm, config, cache)
    assert triplets.train.column_names == ["query", "answer", "negative"]
    assert len(triplets.train) == 8 and all(n.startswith("GIVEN: ") for n in triplets.train["negative"])
    # "Demolition needs a notification." is an evaluation answer: under questions_and_answers never a training
    # negative (under the default, questions, the documents are shared and it may be one).
    counts = json.loads(files.mining.read_text())["given_negatives"]
    assert (counts["dropped_held_out"], counts["used"], counts["mode"]) == (8, 8, "use")
    assert len(triplets.test) == 3  # evaluation triplets are mined as before

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run must reuse its triplets")

    monkeypatch.setattr(embedft.run.stages, "given_negatives_training_set", refuse)
    again = mine_stage(files, prepare_data(config), minilm, config, cache)
    assert again.train.to_list() == triplets.train.to_list()


def test_changed_given_negatives_are_not_reused_by_a_resumed_run(tmp_path, minilm):
    from embedft.models.embedding_cache import EmbeddingCache
    from embedft.run.stages import mine_stage

    config, data = flag_run(tmp_path, "mining.given_negatives=use")
    files = RunFiles(tmp_path / "run")
    files.data_dir.mkdir(parents=True)
    mine_stage(files, data, minilm, config, EmbeddingCache(tmp_path / "embeddings"))
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    rows[0]["neg"] = ["GIVEN: another negative."]
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(OutputError, match="another split"):
        mine_stage(files, prepare_data(config), minilm, config, EmbeddingCache(tmp_path / "embeddings"))


# Configuration


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data_format=flagembedding", "answer_column=pos"], "'answer_column' is for data_format pairs"),
        (["data_format=tevatron", "negative_column=neg"], "'negative_column' is for data_format pairs"),
        (["negative_column=answer"], "also the query or answer column"),
        (["data_format=jsonl"], "'data_format' must be"),
        (["mining.given_negatives=all"], "'mining.given_negatives' must be"),
        (["dataset_config=en"], "packaged data set, which has none"),
        (["eval_dataset_revision=main"], "eval_dataset_name is null"),
        (["dataset_name=org/faq", "dataset_config=''"], "'dataset_config' is empty"),
    ],
)
def test_contradictory_data_options_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


# Hub subsets and revisions, up to the network


def lay_out_dataset_repo(cache_dir: Path, repo_id: str, revisions: dict[str, dict[str, str]]) -> None:
    """A hub data set repo in ``cache_dir`` as huggingface_hub leaves a download: one snapshot per ref, each holding
    an ``en`` and a ``de`` subset (README configs) whose one answer names the ref and the subset."""
    repo = cache_dir / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    for index, (ref, answers) in enumerate(revisions.items()):
        commit = f"{index:040d}"
        (repo / "refs" / ref).write_text(commit)
        snapshot = repo / "snapshots" / commit
        configs = []
        for subset, answer in answers.items():
            (snapshot / subset).mkdir(parents=True)
            write_jsonl(snapshot / subset / "train.jsonl", [{"query": "q", "answer": answer}])
            configs.append(
                f"- config_name: {subset}\n  data_files:\n  - split: train\n    path: {subset}/train.jsonl\n"
            )
        (snapshot / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    cache = tmp_path / "hub"
    lay_out_dataset_repo(
        cache, "org/faq", {"main": {"en": "main en", "de": "main de"}, "v2": {"en": "v2 en", "de": "v2 de"}}
    )
    return cache


@pytest.mark.parametrize(("subset", "revision", "answer"), [("de", None, "main de"), ("en", "v2", "v2 en")])
def test_hub_subset_and_revision_pick_what_is_read(hub_cache, subset, revision, answer):
    pairs = load_pairs("org/faq", cache_dir=str(hub_cache), subset=subset, revision=revision)
    assert pairs["answer"] == [answer]


def test_a_hub_data_set_with_several_subsets_needs_dataset_config(hub_cache):
    with pytest.raises(
        DataError, match="has several subsets \\(subsets: 'en', 'de'\\): set dataset_config to one of them"
    ):
        load_pairs("org/faq", cache_dir=str(hub_cache))
    with pytest.raises(DataError, match="has no subset 'fr' .*: set dataset_config"):
        load_pairs("org/faq", cache_dir=str(hub_cache), subset="fr")


def test_the_configured_subset_and_revision_reach_the_loader(hub_cache):
    config = load_config(
        None,
        [
            "dataset_name=org/faq",
            f"cache_dir={hub_cache}",
            "dataset_config=de",
            "dataset_revision=v2",
            "eval_dataset_name=org/faq",
            "eval_dataset_config=en",
        ],
    )
    from embedft.data.prepared import load_clean_pairs

    assert load_clean_pairs(config, config.dataset_name)[0]["answer"] == ["v2 de"]
    assert load_clean_pairs(config, config.eval_dataset_name, evaluation=True)[0]["answer"] == ["main en"]


def test_a_subset_or_revision_of_a_local_file_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "answer": "a"}])
    with pytest.raises(DataError, match="dataset_config 'en' is set but .* is a single file, .*remove dataset_config"):
        load_pairs(str(path), subset="en")
    with pytest.raises(DataError, match="eval_dataset_revision 'v2' is set but .* is a local path, .*remove"):
        load_pairs(str(path), revision="v2", key="eval_dataset_name")
