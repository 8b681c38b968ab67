"""Synthetic (question, answer) pairs for scale benchmarks, with no download.

The words are the whole English words of the packaged MiniLM's WordPiece vocabulary (``vocab.txt``), which lists them
roughly from most to least frequent, so a Zipf-like draw over their rank makes common words recur as in real text.

The pairs have a retrieval structure: every pair belongs to one of ``max(20, count // 50)`` topics, each a small set
of topic words. A question uses a few of its topic's words, some pair-specific words drawn from the whole vocabulary
and function words; its answer repeats some of the question's content words (never all of them), uses more topic
words and general words. Pairs of the same topic are therefore hard negatives of each other, and only the repeated
question words single out the right answer.

Questions have 8-20 words and end with ``?``; answers have 40-200 words in sentences that end with ``.``. The output
is a function of ``(count, seed)`` only. Questions are unique and so are answers: a row whose question or answer
was already produced is dropped (checked through 64-bit BLAKE2b digests, 16 bytes a row) and made up for at the end,
though the random pair-specific words make this all but impossible.

"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from embedft.columns import ANSWER, QUERY
from embedft.io import atomic_path
from embedft.models.sources import packaged_model_path

QUESTION_WORDS = (8, 20)

ANSWER_WORDS = (40, 200)

# Rows generated at once: large enough for the vectorised draws to pay off, small enough to keep memory low.
BLOCK_SIZE = 10_000

TOPIC_SIZE = 12

PAIRS_PER_TOPIC = 50

MIN_TOPICS = 20

# Topics come in domains (as diseases in medicine, or permits in construction) that share part of their words, so
# a query's nearest answers are its topic's, then its domain's: the clustered structure of real corpora.
TOPICS_PER_DOMAIN = 20

DOMAIN_SIZE = 60

COMMON_WORDS = 1_000  # the most frequent content words are general words, never a topic's own

# A question opens with one of these (one or two words), then mixes function words with content words.
OPENERS = (
    "How does", "How do", "How can", "How should", "How much", "What is", "What are", "What does", "What happens",
    "Why does", "Why is", "Why do", "When should", "When does", "Where can", "Where does", "Which", "Who",
    "Can", "Is", "Should", "Does", "Do", "Are",
)  # fmt: skip


QUESTION_FUNCTION_WORDS = (
    "the", "the", "the", "a", "an", "for", "of", "of", "in", "with", "to", "and", "on", "my", "our", "your", "about",
    "from", "after", "before", "during", "without", "between", "or", "when", "if", "this", "their", "into", "best",
    "most", "more", "than", "any",
)  # fmt: skip


ANSWER_FUNCTION_WORDS = (
    "the", "the", "the", "the", "a", "an", "of", "of", "of", "to", "to", "and", "and", "in", "in", "for", "with",
    "on", "by", "as", "from", "is", "is", "are", "was", "be", "can", "will", "should", "may", "it", "this", "that",
    "which", "also", "usually", "often", "not", "has", "have", "when", "if", "or", "but", "so", "then", "most",
    "more", "each", "every", "some", "their", "its", "your",
)  # fmt: skip


# Never drawn as content words, so a content word shared by a question and its answer is a real match.
FUNCTION_WORDS = frozenset(
    {word.lower() for opener in OPENERS for word in opener.split()}
    | set(QUESTION_FUNCTION_WORDS)
    | set(ANSWER_FUNCTION_WORDS)
    | {"his", "her", "him", "she", "they", "them", "you", "had", "were", "been", "there", "would", "could", "all"}
    | {"one", "two", "out", "who", "its", "what", "about", "over", "then", "than", "only", "just", "like", "were"}
)


# Token kinds.
_FUNCTION, _TOPIC, _SPECIFIC, _GENERAL, _REPEAT, _OPENER = range(6)

# Token forms: the lexicon holds every word in each of them.
_PLAIN, _CAPITALIZED, _PERIOD, _QUESTION_MARK = range(4)


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """The content words: whole, lowercase, alphabetic (ASCII) words of >= 3 letters from the packaged MiniLM's
    WordPiece vocabulary, function words left out, most frequent first (about 21,000 words)."""
    path = Path(packaged_model_path("packaged:all-MiniLM-L6-v2")) / "vocab.txt"
    words = path.read_text(encoding="utf-8").splitlines()
    return tuple(
        dict.fromkeys(
            word
            for word in words
            if len(word) >= 3 and word.isascii() and word.isalpha() and word.islower() and word not in FUNCTION_WORDS
        )
    )


def synthetic_pairs(count: int, seed: int = 0) -> Iterator[dict[str, str]]:
    """Yield ``count`` synthetic ``{"query": ..., "answer": ...}`` pairs, the same ones for the same arguments.

    Rows are generated in blocks of :data:`BLOCK_SIZE`, so memory stays flat however large ``count`` is.

    Args:
        count: The number of pairs; 0 yields nothing.
        seed: The seed of ``np.random.default_rng``.

    Raises:
        ValueError: ``count`` is negative.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return _generate(count, seed)


def write_synthetic_pairs(path: str | Path, count: int, seed: int = 0) -> Path:
    """Write :func:`synthetic_pairs` as JSON lines, through a temporary file and a rename, and return the path.

    The parent folder is created if needed; a reader never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("w", encoding="utf-8", newline="\n") as file:
        for row in synthetic_pairs(count, seed):
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class _Lexicon:
    """Every word in every form, in one array that a vectorised draw indexes with ``form * size + word_id``."""

    def __init__(self, content: tuple[str, ...]) -> None:
        function = tuple(dict.fromkeys(QUESTION_FUNCTION_WORDS + ANSWER_FUNCTION_WORDS))
        words = [*content, *function, *OPENERS]
        self.size = len(words)
        self.content_size = len(content)
        index = {word: self.content_size + i for i, word in enumerate(function)}
        self.question_function = np.array([index[word] for word in QUESTION_FUNCTION_WORDS])
        self.answer_function = np.array([index[word] for word in ANSWER_FUNCTION_WORDS])
        self.openers = np.arange(self.content_size + len(function), self.size)
        self.opener_words = np.array([len(opener.split()) for opener in OPENERS])
        forms = [
            words,
            [word[:1].upper() + word[1:] for word in words],
            [f"{w}." for w in words],
            [f"{w}?" for w in words],
        ]
        self.words = np.array([word for form in forms for word in form], dtype=object)

    def render(self, ids: np.ndarray, forms: np.ndarray) -> list[str]:
        """The words of the ids in the forms."""
        return self.words[forms * self.size + ids].tolist()


class _Seen:
    """The sorted 64-bit digests of the strings kept so far: 8 bytes a string, not the strings themselves."""

    def __init__(self) -> None:
        self.digests = np.empty(0, dtype=np.uint64)

    @staticmethod
    def digest(texts: Iterable[str]) -> np.ndarray:
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") for text in texts),
            dtype=np.uint64,
        )

    def new(self, digests: np.ndarray) -> np.ndarray:
        """Which digests are neither seen before nor repeats of an earlier one in ``digests``."""
        first = np.zeros(len(digests), dtype=bool)
        first[np.unique(digests, return_index=True)[1]] = True
        if len(self.digests):
            at = np.minimum(np.searchsorted(self.digests, digests), len(self.digests) - 1)
            first &= self.digests[at] != digests
        return first

    def add(self, digests: np.ndarray) -> None:
        # The array is one sorted run plus a short one, which a stable (merge) sort joins in linear time.
        self.digests = np.sort(np.concatenate([self.digests, digests]), kind="stable")


def _zipf(rng: np.random.Generator, size: int, n: int, offset: float) -> np.ndarray:
    """``n`` ranks in ``[0, size)`` with probability about ``1 / (rank + offset)``, by inverting the continuous CDF
    (much faster than ``rng.choice(p=...)``); a larger offset flattens the head."""
    ranks = offset * ((size + offset) / offset) ** rng.random(n) - offset
    return np.minimum(ranks.astype(np.int64), size - 1)


def _flat(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows of ``lengths`` tokens laid end to end: each row's start, and each token's row and position in it."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    rows = np.repeat(np.arange(len(lengths)), lengths)
    return starts, rows, np.arange(rows.size) - starts[rows]


def _join(tokens: list[str], starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    return [" ".join(tokens[start : start + length]) for start, length in zip(starts.tolist(), lengths.tolist())]


def _generate(count: int, seed: int) -> Iterator[dict[str, str]]:
    rng = np.random.default_rng(seed)
    lexicon = _Lexicon(vocabulary())
    # Half of a topic's words come from its domain, half are its own; both from the less frequent words.
    n_topics = max(MIN_TOPICS, count // PAIRS_PER_TOPIC)
    n_domains = max(1, n_topics // TOPICS_PER_DOMAIN)
    domains = rng.integers(COMMON_WORDS, lexicon.content_size, size=(n_domains, DOMAIN_SIZE))
    shared = domains[
        rng.integers(n_domains, size=n_topics)[:, None], rng.integers(DOMAIN_SIZE, size=(n_topics, TOPIC_SIZE // 2))
    ]
    own = rng.integers(COMMON_WORDS, lexicon.content_size, size=(n_topics, TOPIC_SIZE - TOPIC_SIZE // 2))
    topics = np.concatenate([shared, own], axis=1)
    block = min(BLOCK_SIZE, count)
    seen_questions, seen_answers = _Seen(), _Seen()
    produced = 0
    while produced < count:
        questions, answers = _block(rng, lexicon, topics, block)
        question_digests, answer_digests = _Seen.digest(questions), _Seen.digest(answers)
        keep = np.flatnonzero(seen_questions.new(question_digests) & seen_answers.new(answer_digests))
        keep = keep[: count - produced]
        seen_questions.add(question_digests[keep])
        seen_answers.add(answer_digests[keep])
        for i in keep.tolist():
            yield {QUERY: questions[i], ANSWER: answers[i]}
        produced += len(keep)


def _block(rng: np.random.Generator, lexicon: _Lexicon, topics: np.ndarray, n: int) -> tuple[list[str], list[str]]:
    """``n`` questions and their answers."""
    topic = rng.integers(len(topics), size=n)

    # Questions: an opener, then function, topic and pair-specific words; at least one topic word (never the last
    # word) and a pair-specific word last.
    opener = rng.integers(len(lexicon.openers), size=n)
    q_lengths = rng.integers(QUESTION_WORDS[0], QUESTION_WORDS[1] + 1, size=n) - lexicon.opener_words[opener] + 1
    q_starts, q_rows, q_positions = _flat(q_lengths)
    kinds = np.select([(u := rng.random(q_rows.size)) < 0.45, u < 0.65], [_FUNCTION, _TOPIC], _SPECIFIC)
    forced_topic = q_starts + rng.integers(1, q_lengths - 1)
    kinds[forced_topic] = _TOPIC
    last = q_starts + q_lengths - 1
    kinds[last] = _SPECIFIC
    kinds[q_starts] = _OPENER
    ids = np.empty(q_rows.size, dtype=np.int64)
    ids[q_starts] = lexicon.openers[opener]
    mask = kinds == _FUNCTION
    ids[mask] = lexicon.question_function[rng.integers(len(lexicon.question_function), size=mask.sum())]
    mask = kinds == _TOPIC
    ids[mask] = topics[topic[q_rows[mask]], rng.integers(TOPIC_SIZE, size=mask.sum())]
    mask = kinds == _SPECIFIC
    ids[mask] = rng.integers(lexicon.content_size, size=mask.sum())
    forms = np.where(q_positions == q_lengths[q_rows] - 1, _QUESTION_MARK, _PLAIN)
    questions = _join(lexicon.render(ids, forms), q_starts, q_lengths)

    # The question words its answer may repeat: about half of its content words, always its last (pair-specific)
    # word and never its forced topic word, so some but not all.
    repeatable = ((kinds == _TOPIC) | (kinds == _SPECIFIC)) & (rng.random(q_rows.size) < 0.5)
    repeatable[last] = True
    repeatable[forced_topic] = False
    repeat_ids = ids[repeatable]
    repeat_counts = np.bincount(q_rows[repeatable], minlength=n)
    repeat_starts = np.cumsum(repeat_counts) - repeat_counts

    # Answers: sentences of 6-18 words (the last one 5-23) of function, topic, general and repeated question words,
    # with at least one repeated word.
    a_lengths = np.clip(np.rint(rng.lognormal(np.log(90.0), 0.45, size=n)), *ANSWER_WORDS).astype(np.int64)
    a_starts, a_rows, _ = _flat(a_lengths)
    sentence_ends = np.cumsum(rng.integers(6, 19, size=(n, ANSWER_WORDS[1] // 6 + 1)), axis=1) - 1
    inner = sentence_ends < (a_lengths - 5)[:, None]
    ends = np.zeros(a_rows.size, dtype=bool)
    ends[(a_starts[:, None] + sentence_ends)[inner]] = True
    ends[a_starts + a_lengths - 1] = True
    starts = np.empty_like(ends)
    starts[0], starts[1:] = True, ends[:-1]
    u = rng.random(a_rows.size)
    kinds = np.select([u < 0.35, u < 0.70, u < 0.85], [_FUNCTION, _TOPIC, _GENERAL], _REPEAT)
    kinds[ends & (kinds == _FUNCTION)] = _GENERAL
    kinds[a_starts + rng.integers(a_lengths)] = _REPEAT
    ids = np.empty(a_rows.size, dtype=np.int64)
    mask = kinds == _FUNCTION
    ids[mask] = lexicon.answer_function[rng.integers(len(lexicon.answer_function), size=mask.sum())]
    mask = kinds == _TOPIC
    ids[mask] = topics[topic[a_rows[mask]], rng.integers(TOPIC_SIZE, size=mask.sum())]
    mask = kinds == _GENERAL
    ids[mask] = _zipf(rng, lexicon.content_size, mask.sum(), offset=10.0)
    mask = kinds == _REPEAT
    rows = a_rows[mask]
    ids[mask] = repeat_ids[repeat_starts[rows] + (rng.random(rows.size) * repeat_counts[rows]).astype(np.int64)]
    forms = np.where(ends, _PERIOD, np.where(starts, _CAPITALIZED, _PLAIN))
    answers = _join(lexicon.render(ids, forms), a_starts, a_lengths)
    return questions, answers
