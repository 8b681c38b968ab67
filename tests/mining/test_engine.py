"""Hard-negative mining: real negatives from the packaged MiniLM, never a positive."""

from __future__ import annotations

import logging
import random
import re

import pytest
import torch
from datasets import Dataset, concatenate_datasets

from embedft.config.schema import MiningConfig
from embedft.mining.engine import derived_range_max, library_excludes_query_text
from embedft.mining.held_out import mine_evaluation_triplets
from embedft.mining.training_set import mine_training_triplets
from tests.conftest import at, query_vector, rows, unit, word_model


def answer_pool(splits) -> list[str]:
    return list(dict.fromkeys([*splits["train"]["answer"], *splits["test"]["answer"]]))


def positives_by_query(*datasets: Dataset) -> dict[str, set[str]]:
    positives: dict[str, set[str]] = {}
    for dataset in datasets:
        for query, answer in zip(dataset["query"], dataset["answer"]):
            positives.setdefault(query, set()).add(answer)
    return positives


def all_negatives(triplets: Dataset) -> list[str]:
    """Every negative, row by row (negative, or negative_1 ... negative_k)."""
    return [text for row in rows(triplets) for text in row[2:]]


def negatives_of(vectors: dict[str, list[float]], options: MiningConfig, extra: list[str]) -> list[str]:
    """Negatives mined for the one pair (q, pos), with ``extra`` documents as the other candidates."""
    train = Dataset.from_dict({"query": ["q"], "answer": ["pos"]})
    triplets = mine_training_triplets(train, word_model(vectors), options, seed=1, extra_documents=extra)
    return all_negatives(triplets)


def test_training_negatives_are_training_answers_and_never_a_positive(small_splits, minilm):
    train = small_splits["train"]
    options = MiningConfig(num_negatives=2, range_max=20, margin=None)
    triplets = mine_training_triplets(train, minilm, options, seed=1)
    assert triplets.column_names == ["query", "answer", "negative_1", "negative_2"]  # one n-tuple row per pair
    positives = positives_by_query(train)
    train_answers = set(train["answer"])
    assert len(triplets) == len(train)
    for query, answer, *negatives in rows(triplets):
        assert len(set(negatives)) == 2
        for negative in negatives:
            assert negative != answer
            assert negative not in positives[query]
            assert negative in train_answers


def test_chunked_mining_equals_unchunked(small_splits, minilm):
    train = small_splits["train"]
    whole = mine_training_triplets(train, minilm, MiningConfig(chunk_size=200_000), seed=1)
    chunked = mine_training_triplets(train, minilm, MiningConfig(chunk_size=3), seed=1)
    assert list(zip(whole["query"], whole["answer"], whole["negative"])) == list(
        zip(chunked["query"], chunked["answer"], chunked["negative"])
    )


def test_derived_range_max_is_the_librarys_formula(capsys):
    from sentence_transformers.util import mine_hard_negatives

    model = word_model({"q": query_vector(0), "a": at(0.9), "b": at(0.8), "c": at(0.5), "d": at(0.2)})
    pairs = Dataset.from_dict({"query": ["q", "q"], "answer": ["a", "b"]})  # max_positives = 2
    for options in (
        MiningConfig(margin=None, range_min=1, num_negatives=2),
        MiningConfig(margin=0.0, range_min=1, num_negatives=2),
        MiningConfig(margin=None, relative_margin=0.05, num_negatives=2),
        MiningConfig(margin=None, max_score=0.9, num_negatives=3),
    ):
        mine_hard_negatives(
            pairs,
            model,
            corpus=["a", "b", "c", "d"],
            range_min=options.range_min,
            absolute_margin=options.margin,
            relative_margin=options.relative_margin,
            max_score=options.max_score,
            num_negatives=options.num_negatives,
        )
        printed = re.search(r"Setting range_max to (\d+)", capsys.readouterr().out)
        assert int(printed.group(1)) == derived_range_max(options, max_positives=2)
    assert derived_range_max(MiningConfig(margin=None, range_min=1, num_negatives=2), 2) == 5
    assert derived_range_max(MiningConfig(margin=0.0, range_min=1, num_negatives=2), 2) == 23


def multi_answer_case() -> tuple[object, Dataset]:
    """qa has three answers, qb one (each its own chunk with chunk_size=1). qb's top candidates all score above its
    positive, so with margin 0 only a candidate deep in its ranking ("low") is a valid negative."""
    vectors = {
        "qa": query_vector(1),
        "a1": at(0.99, 1),
        "a2": at(0.98, 1),
        "a3": at(0.97, 1),
        "na": at(0.5, 1),  # qa's hardest valid negative
        "qb": query_vector(0),
        "pb": at(0.3),
        "low": at(0.1),
        **{f"d{i}": at(0.9 - 0.01 * i) for i in range(11)},  # above pb: removed by margin 0
    }
    train = Dataset.from_dict({"query": ["qa", "qa", "qa", "qb"], "answer": ["a1", "a2", "a3", "pb"]})
    return word_model(vectors), train


def test_chunked_mining_equals_unchunked_when_range_max_is_derived(caplog):
    # Unchunked, range_max = 10 + 3 (qa's rows) reaches "low"; qb's own chunk alone would derive 10 + 1 = 11,
    # which holds only d0..d10 and pb, so qb would lose its negative.
    model, train = multi_answer_case()
    extra = ["na", "low", *[f"d{i}" for i in range(11)]]
    options = MiningConfig(range_max=None, margin=0.0)
    whole = mine_training_triplets(train, model, options, seed=1, extra_documents=extra)
    with caplog.at_level(logging.INFO, logger="embedft.mining"):
        chunked = mine_training_triplets(
            train, model, MiningConfig(range_max=None, margin=0.0, chunk_size=1), seed=1, extra_documents=extra
        )
    assert ("qb", "pb", "low") in rows(whole)
    assert rows(chunked) == rows(whole)
    assert sum("mining.range_max is null: using 13" in r.getMessage() for r in caplog.records) == 1


def test_chunked_mining_equals_unchunked_with_a_filter_and_a_set_range_max():
    # mine_hard_negatives ranks range_max + max_positives candidates before filtering: every chunk must see the
    # whole set's max_positives (3), or qb's chunk (1) ranks only d0, d1, pb and finds nothing valid.
    model, train = multi_answer_case()
    extra = ["na", "low", "d0", "d1"]
    whole = mine_training_triplets(train, model, MiningConfig(range_max=2), seed=1, extra_documents=extra)
    chunked = mine_training_triplets(
        train, model, MiningConfig(range_max=2, chunk_size=1), seed=1, extra_documents=extra
    )
    assert ("qb", "pb", "low") in rows(whole)
    assert rows(chunked) == rows(whole)


def test_chunked_random_mining_equals_unchunked(small_splits, minilm):
    train = small_splits["train"]
    options = {"sampling_strategy": "random", "range_max": 8, "num_negatives": 2, "margin": None}
    whole = mine_training_triplets(train, minilm, MiningConfig(**options), seed=5)
    chunked = mine_training_triplets(train, minilm, MiningConfig(chunk_size=3, **options), seed=5)
    assert rows(chunked) == rows(whole)


def test_relative_margin_drops_a_false_negative_above_95_percent_of_the_positive():
    # Positive 0.8: the line is 0.8 - 0.05 * 0.8 = 0.76. "fn" (0.78) is above it, "near" (0.74) below.
    vectors = {"q": query_vector(0), "pos": at(0.8), "fn": at(0.78), "near": at(0.74), "far": at(0.2)}
    extra = ["fn", "near", "far"]
    assert negatives_of(vectors, MiningConfig(margin=None), extra) == ["fn"]
    assert negatives_of(vectors, MiningConfig(margin=None, relative_margin=0.05), extra) == ["near"]


def test_absolute_margin_sets_how_far_below_the_positive_a_negative_must_be():
    vectors = {"q": query_vector(0), "pos": at(0.8), "above": at(0.85), "close": at(0.75), "clear": at(0.65)}
    extra = ["above", "close", "clear"]
    assert negatives_of(vectors, MiningConfig(margin=None), extra) == ["above"]
    assert negatives_of(vectors, MiningConfig(margin=0.0), extra) == ["close"]
    assert negatives_of(vectors, MiningConfig(margin=0.1), extra) == ["clear"]


def test_a_document_that_is_the_query_itself_is_not_its_negative_where_the_library_says_so():
    # "q" is also a document (another pair's answer, or a corpus_file line), and the closest one to the query "q".
    # sentence-transformers 6.3 excludes it; 6.2 took it. embedft follows the installed library.
    vectors = {"q": query_vector(0), "pos": at(0.9), "near": at(0.7), "far": at(0.2)}
    negatives = negatives_of(vectors, MiningConfig(margin=None), ["q", "near", "far"])
    assert negatives == (["near"] if library_excludes_query_text() else ["q"])


def test_a_candidate_above_max_score_is_never_chosen():
    vectors = {"q": query_vector(0), "pos": at(0.95), "hi": at(0.9), "mid": at(0.7), "low": at(0.3)}
    extra = ["hi", "mid", "low"]
    assert negatives_of(vectors, MiningConfig(margin=None, num_negatives=2), extra) == ["hi", "mid"]
    assert negatives_of(vectors, MiningConfig(margin=None, num_negatives=2, max_score=0.8), extra) == ["mid", "low"]


def test_random_sampling_is_seeded(small_splits, minilm):
    train = small_splits["train"]
    options = MiningConfig(sampling_strategy="random", range_max=8, num_negatives=2, margin=None)
    first = mine_training_triplets(train, minilm, options, seed=1)
    again = mine_training_triplets(train, minilm, options, seed=1)
    other = mine_training_triplets(train, minilm, options, seed=2)
    assert rows(first) == rows(again)
    assert rows(first) != rows(other)


def test_random_sampling_leaves_the_callers_random_state_alone(minilm):
    train = Dataset.from_dict({"query": ["a permit?", "a roof?"], "answer": ["permits", "roofs"]})
    options = MiningConfig(sampling_strategy="random", range_max=3, margin=None)
    random.seed(123)
    expected = random.random()
    random.seed(123)
    mine_training_triplets(train, minilm, options, seed=1, extra_documents=["walls", "doors", "floors"])
    assert random.random() == expected


def test_random_negatives_come_from_the_top_range_max_and_are_never_positives(small_splits, minilm):
    train = small_splits["train"]
    range_max = 6
    options = MiningConfig(sampling_strategy="random", range_max=range_max, num_negatives=2, margin=None)
    triplets = mine_training_triplets(train, minilm, options, seed=1)
    assert len(triplets) == len(train)
    positives = positives_by_query(train)
    pool = list(dict.fromkeys(train["answer"]))
    queries = list(positives)
    scores = minilm.similarity(minilm.encode_query(queries), minilm.encode_document(pool))
    beyond_top_two = 0
    for query_text, _, *negatives in rows(triplets):
        row = scores[queries.index(query_text)]
        ranked = [pool[i] for i in row.argsort(descending=True).tolist() if pool[i] not in positives[query_text]]
        for negative in negatives:
            assert negative not in positives[query_text]
            # Within the top range_max non-positive candidates (up to float noise between encoding batches).
            assert row[pool.index(negative)] >= row[pool.index(ranked[range_max - 1])] - 1e-4
            beyond_top_two += negative not in ranked[:2]
    assert beyond_top_two > 0  # sampled, not simply the top two


@pytest.mark.parametrize("chunk_size", [1, 100])
def test_mining_that_keeps_no_negative_returns_typed_empty_triplets(caplog, chunk_size):
    # Every candidate scores above both positives (each query's answer above the other's): nothing passes margin 0.
    vectors = {
        "qa": query_vector(1),
        "pa": unit(0.5, 0.1),
        "qb": query_vector(0),
        "pb": unit(0.1, 0.5),
        "x": unit(0.7, 0.7),
    }
    train = Dataset.from_dict({"query": ["qa", "qb"], "answer": ["pa", "pb"]})
    options = MiningConfig(margin=0.0, chunk_size=chunk_size, unmined_pairs="drop")
    with caplog.at_level(logging.WARNING, logger="embedft.mining"):
        triplets = mine_training_triplets(train, word_model(vectors), options, seed=1, extra_documents=["x"])
    assert len(triplets) == 0
    assert triplets.column_names == ["query", "answer", "negative"]
    assert {name: feature.dtype for name, feature in triplets.features.items()} == dict.fromkeys(
        ["query", "answer", "negative"], "string"
    )
    assert any("2 of 2 training pairs got no negative" in r.getMessage() for r in caplog.records)


def test_an_empty_first_chunk_concatenates_with_a_later_one():
    # qa (chunk 1) has no valid candidate (pb, x, y all score above pa); qb (chunk 2) has pa, x and y below pb.
    vectors = {
        "qa": query_vector(1),
        "pa": unit(0.5, 0.1),
        "x": unit(0.0, 0.7),
        "qb": query_vector(0),
        "pb": unit(0.9, 0.3),
        "y": unit(0.2, 0.5),
    }
    train = Dataset.from_dict({"query": ["qa", "qb"], "answer": ["pa", "pb"]})
    options = MiningConfig(margin=0.0, chunk_size=1)
    triplets = mine_training_triplets(train, word_model(vectors), options, seed=1, extra_documents=["x", "y"])
    assert rows(triplets) == [("qb", "pb", "pa")]  # pa (0.5) is qb's hardest valid candidate
    assert triplets.features["negative"].dtype == "string"


def test_no_duplicates_sampler_keeps_a_batchs_texts_apart_and_yields_every_row(small_splits, minilm):
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    # (query, answer, negative_1..3) rows of neighbouring questions share negatives: the sampler must still keep
    # every text once per batch.
    options = MiningConfig(num_negatives=3, range_max=10, margin=None)
    triplets = mine_training_triplets(small_splits["train"], minilm, options, seed=1)
    assert len(triplets) == len(small_splits["train"]) and len(triplets.column_names) == 5
    # drop_last=False, as the trainer passes by default (dataloader_drop_last).
    sampler = NoDuplicatesBatchSampler(triplets, batch_size=16, drop_last=False, generator=torch.Generator(), seed=0)
    batches = list(sampler)
    for batch in batches:
        texts = [text for i in batch for text in rows(triplets.select([i]))[0]]
        assert len(texts) == len(set(texts))
    # One pass yields every row exactly once: a conflicting row is deferred to a later (possibly smaller) batch,
    # never dropped; with drop_last=True the leftover small batches would be dropped instead.
    assert sorted(i for batch in batches for i in batch) == list(range(len(triplets)))
    # Each row's three negatives are other rows' answers (the pool is the 48 training answers): rows conflict often,
    # so batches come out well below 16 here (6 at most with this seed). A bigger pool conflicts less.
    assert 1 < max(len(batch) for batch in batches) <= 16


def test_evaluation_negative_is_never_a_positive_of_the_query(small_splits, minilm):
    test, train = small_splits["test"], small_splits["train"]
    # A training answer to an evaluation question is a positive too and must not become its negative.
    first = test[0]
    related = Dataset.from_dict({"query": [first["query"]], "answer": [train[0]["answer"]]})
    train = concatenate_datasets([train, related])
    pool = answer_pool({"train": train, "test": test})
    triplets = mine_evaluation_triplets(test, pool, minilm, batch_size=32, other_pairs=train)
    assert len(triplets) == len(test)
    positives = positives_by_query(test, train)
    for query, answer, negative in zip(triplets["query"], triplets["answer"], triplets["negative"]):
        assert negative not in positives[query]
        assert negative != answer
    # The pool is the whole answer set: at least one negative is a training answer.
    assert set(triplets["negative"]) & set(small_splits["train"]["answer"])


def test_evaluation_negative_is_the_hardest_wrong_answer(small_splits, minilm):
    test = small_splits["test"]
    pool = answer_pool(small_splits)
    triplets = mine_evaluation_triplets(test, pool, minilm, batch_size=32, other_pairs=small_splits["train"])
    row = triplets[0]
    candidates = [text for text in pool if text != row["answer"]]
    scores = minilm.similarity(minilm.encode([row["query"]]), minilm.encode(candidates))[0]
    assert candidates[int(scores.argmax())] == row["negative"]


def test_a_mining_model_with_another_tokenizer_works(small_splits):
    from tests.conftest import word_model

    words = {word for text in small_splits["train"]["answer"] for word in text.split()[:3]}
    rng = __import__("numpy").random.default_rng(0)
    mining_model = word_model({word: rng.normal(size=8).tolist() for word in sorted(words)})
    triplets = mine_training_triplets(small_splits["train"], mining_model, MiningConfig(margin=None), seed=1)
    assert len(triplets) == len(small_splits["train"])
    assert all(n != a for a, n in zip(triplets["answer"], triplets["negative"]))


LIBRARY_CASES = [
    {"margin": None, "num_negatives": 3, "range_max": 10},
    {"margin": 0.0, "range_max": None},
    {"margin": 0.05, "num_negatives": 2, "range_max": 30},
    {"margin": None, "relative_margin": 0.05, "num_negatives": 2, "range_max": 20},
    {"margin": None, "max_score": 0.6, "min_score": 0.1, "range_min": 2, "range_max": 15},
    {"margin": 0.0, "sampling_strategy": "random", "num_negatives": 3, "range_max": 12},
]


@pytest.mark.parametrize("options", LIBRARY_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("exact_search_limit", [None, 0], ids=["exact", "approximate"])
def test_mining_gives_what_mine_hard_negatives_gives(small_splits, minilm, options, exact_search_limit):
    # The library on the same pairs (a question with two answers included) and pool is the reference: the same
    # filters, the same random draws, the same rows in the same order. With a pool this small the approximate
    # index has one list and scans it whole, so it must agree as well. One extra document is a training question's
    # own text, which sentence-transformers 6.3 and newer never take as that question's negative.
    from sentence_transformers.util import mine_hard_negatives

    train = small_splits["train"]
    train = concatenate_datasets(
        [train, Dataset.from_dict({"query": [train[0]["query"]], "answer": [train[5]["answer"]]})]
    )
    extra = [*small_splits["test"]["answer"][:10], train[1]["query"]]
    config = MiningConfig(exact_search_limit=exact_search_limit, chunk_size=7, **options)
    ours = mine_training_triplets(train, minilm, config, seed=3, extra_documents=extra)
    random.seed(3)
    theirs = mine_hard_negatives(
        train,
        minilm,
        anchor_column_name="query",
        positive_column_name="answer",
        corpus=list(dict.fromkeys([*train["answer"], *extra])),
        range_min=config.range_min,
        range_max=config.range_max,
        absolute_margin=config.margin,
        relative_margin=config.relative_margin,
        max_score=config.max_score,
        min_score=config.min_score,
        num_negatives=config.num_negatives,
        sampling_strategy=config.sampling_strategy,
        output_format="triplet" if config.num_negatives == 1 else "n-tuple",  # n-tuple: the rows ours give
        verbose=False,
    )
    assert len(theirs) > 0
    assert ours.column_names == theirs.column_names
    assert rows(ours) == rows(theirs)


def test_a_pool_built_from_texts_in_memory_mines_the_same_rows(small_splits, minilm):
    # The pipeline passes PreparedData.corpus (every answer, test ones included) so the training pool reuses
    # those strings: only the training answers (and extra documents) may be candidates, in the same order.
    train, test = small_splits["train"], small_splits["test"]
    everything = list(dict.fromkeys([*train["answer"], *test["answer"]]))
    extra = ["a wall is a vertical structure", "doors open"]
    options = MiningConfig(num_negatives=2, range_max=10)
    plain = mine_training_triplets(train, minilm, options, seed=1, extra_documents=extra)
    reused = mine_training_triplets(train, minilm, options, seed=1, extra_documents=extra, texts=everything)
    assert rows(reused) == rows(plain)
    assert not set(all_negatives(reused)) & (set(test["answer"]) - set(train["answer"]))
