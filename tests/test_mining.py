"""Hard-negative mining: real negatives from the packaged MiniLM, never a positive."""

from __future__ import annotations

from datasets import Dataset, concatenate_datasets

from embedft.config import MiningConfig
from embedft.mining import mine_evaluation_triplets, mine_training_triplets, query_chunks


def answer_pool(splits) -> list[str]:
    return list(dict.fromkeys([*splits["train"]["answer"], *splits["test"]["answer"]]))


def positives_by_query(*datasets: Dataset) -> dict[str, set[str]]:
    positives: dict[str, set[str]] = {}
    for dataset in datasets:
        for query, answer in zip(dataset["query"], dataset["answer"]):
            positives.setdefault(query, set()).add(answer)
    return positives


def test_query_chunks_bound_the_size_and_keep_a_query_together():
    queries = ["a", "b", "b", "c", "d", "d", "d", "e"]
    chunks = query_chunks(queries, 3)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(8))
    for chunk in chunks:
        assert len(chunk) <= 3
    owner = {queries[i]: n for n, chunk in enumerate(chunks) for i in chunk}
    for n, chunk in enumerate(chunks):
        assert all(owner[queries[i]] == n for i in chunk)


def test_training_negatives_are_training_answers_and_never_a_positive(small_splits, minilm):
    train = small_splits["train"]
    options = MiningConfig(num_negatives=2, range_max=20, margin=None)
    triplets = mine_training_triplets(train, minilm, options, seed=1)
    assert triplets.column_names == ["query", "answer", "negative"]
    positives = positives_by_query(train)
    train_answers = set(train["answer"])
    assert len(triplets) == 2 * len(train)
    for query, answer, negative in zip(triplets["query"], triplets["answer"], triplets["negative"]):
        assert negative != answer
        assert negative not in positives[query]
        assert negative in train_answers


def test_chunked_mining_equals_unchunked(small_splits, minilm):
    train = small_splits["train"]
    whole = mine_training_triplets(train, minilm, MiningConfig(chunk_size=200_000), seed=1)
    chunked = mine_training_triplets(train, minilm, MiningConfig(chunk_size=7), seed=1)
    assert list(zip(whole["query"], whole["answer"], whole["negative"])) == list(
        zip(chunked["query"], chunked["answer"], chunked["negative"])
    )


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
    from tests.test_evaluation import word_model

    words = {word for text in small_splits["train"]["answer"] for word in text.split()[:3]}
    rng = __import__("numpy").random.default_rng(0)
    mining_model = word_model({word: rng.normal(size=8).tolist() for word in sorted(words)})
    triplets = mine_training_triplets(small_splits["train"], mining_model, MiningConfig(margin=None), seed=1)
    assert len(triplets) == len(small_splits["train"])
    assert all(n != a for a, n in zip(triplets["answer"], triplets["negative"]))
