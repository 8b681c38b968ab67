"""Synthetic (question, answer) pairs: lengths, determinism, uniqueness, shared words, the JSON lines file."""

from __future__ import annotations

import json
import re

import pytest

from embedft.bench.synthetic import FUNCTION_WORDS, synthetic_pairs, vocabulary, write_synthetic_pairs


@pytest.fixture(scope="module")
def pairs() -> list[dict[str, str]]:
    return list(synthetic_pairs(500, seed=3))


def content_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - FUNCTION_WORDS


def test_vocabulary_is_whole_lowercase_words():
    words = vocabulary()
    assert len(words) > 15_000
    assert all(len(word) >= 3 and word.isalpha() and word.islower() for word in words)
    assert not FUNCTION_WORDS & set(words)


def test_lengths_and_punctuation(pairs):
    assert len(pairs) == 500
    for pair in pairs:
        assert list(pair) == ["query", "answer"]
        question, answer = pair["query"].split(), pair["answer"].split()
        assert 8 <= len(question) <= 20
        assert 40 <= len(answer) <= 200
        assert pair["query"].endswith("?") and pair["query"].count("?") == 1
        assert pair["answer"].endswith(".") and "?" not in pair["answer"]
        sentences = pair["answer"].removesuffix(".").split(". ")
        assert all(sentence[0].isupper() and len(sentence.split()) >= 5 for sentence in sentences)


def test_same_seed_same_pairs_other_seed_other_pairs(pairs):
    assert list(synthetic_pairs(500, seed=3)) == pairs
    other = list(synthetic_pairs(500, seed=4))
    assert not {pair["query"] for pair in other} & {pair["query"] for pair in pairs}


def test_questions_and_answers_are_unique():
    rows = list(synthetic_pairs(20_000, seed=0))
    assert len(rows) == 20_000
    assert len({row["query"] for row in rows}) == len(rows)
    assert len({row["answer"] for row in rows}) == len(rows)


def test_answer_repeats_some_question_words(pairs):
    for pair in pairs:
        assert content_words(pair["query"]) & content_words(pair["answer"])


def test_pairs_of_a_topic_share_words(pairs):
    """Other questions' answers share content words with a question too (hard negatives), just fewer on average."""
    questions = [content_words(pair["query"]) for pair in pairs]
    answers = [content_words(pair["answer"]) for pair in pairs]
    own = sum(len(q & a) for q, a in zip(questions, answers)) / len(pairs)
    others = [len(questions[i] & answers[j]) for i in range(100) for j in range(len(pairs)) if i != j]
    assert max(others) >= 2
    assert own > 2 * sum(others) / len(others)


def test_zero_and_negative_count():
    assert list(synthetic_pairs(0)) == []
    with pytest.raises(ValueError, match="count"):
        synthetic_pairs(-1)


@pytest.mark.parametrize("count", [0, 1, 1234])
def test_write_synthetic_pairs(tmp_path, count):
    path = write_synthetic_pairs(tmp_path / "sub" / "pairs.jsonl", count, seed=7)
    assert path == tmp_path / "sub" / "pairs.jsonl"
    assert [p.name for p in path.parent.iterdir()] == ["pairs.jsonl"]
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == count
    assert all(set(row) == {"query", "answer"} for row in rows)
    assert rows == list(synthetic_pairs(count, seed=7))
