"""The seeded split: held-out questions by connected groups, a given split, dev questions and the sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embedft.columns import ANSWER, QUERY
from embedft.data.rows import iter_pairs, text_digest
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)


def sample_pairs(dataset: Dataset, sample_size: int | None, seed: int) -> Dataset:
    """Draw ``sample_size`` pairs with a seeded permutation; all of them when None or larger than the data."""
    if sample_size is None or sample_size >= len(dataset):
        if sample_size is not None and sample_size > len(dataset):
            logger.warning(
                "sample_size=%d is larger than the training side (%d pairs): using all of them",
                sample_size,
                len(dataset),
            )
        return dataset
    order = np.random.default_rng(seed).permutation(len(dataset))[:sample_size]
    return dataset.select(sorted(order.tolist()))


def question_count(size: int | float, n_questions: int, key: str = "test_size") -> int:
    """How many questions ``size`` means: itself, or a fraction of ``n_questions``; at least one."""
    count = round(size * n_questions) if isinstance(size, float) else size
    if count < 1:
        raise DataError(f"{key}={size} holds out no question of {n_questions}: raise {key} to at least one question")
    return count


def pick_questions(queries: list[str], count: int, seed: int) -> set[str]:
    """``count`` of the distinct ``queries`` by a seeded permutation: the same on every run with the same seed."""
    order = np.random.default_rng(seed).permutation(len(queries))
    return {queries[i] for i in order[:count]}


def question_groups(dataset: Dataset) -> list[list[str]]:
    """The distinct questions in connected groups: two questions are in one group when they share an answer.

    Keeping a group on one side of a split keeps every answer text on one side too: a question and an answer it
    shares with another question can never be split between training and evaluation.

    Returns:
        Groups of question texts, in order of first appearance.
    """
    parent: dict[str, str] = {}

    def root(query: str) -> str:
        while parent[query] != query:
            parent[query] = parent[parent[query]]  # path halving keeps the trees flat
            query = parent[query]
        return query

    first_asker: dict[bytes, str] = {}  # by a hash of the answer: a million answers need not stay in memory
    for query, answer in iter_pairs(dataset):
        parent.setdefault(query, query)
        other = first_asker.setdefault(text_digest(answer), query)
        parent[root(query)] = root(other)
    groups: dict[str, list[str]] = {}
    for query in parent:
        groups.setdefault(root(query), []).append(query)
    return list(groups.values())


def pick_groups(groups: list[list[str]], count: int, seed: int) -> set[str]:
    """Questions of whole groups, taken in a seeded order, up to ``count`` questions.

    A group that would overshoot ``count`` is skipped and the next one tried, so the held-out set has exactly
    ``count`` questions unless only groups too large to fit remain (then fewer, with a warning).
    """
    chosen: set[str] = set()
    for index in np.random.default_rng(seed).permutation(len(groups)):
        group = groups[index]
        if len(chosen) + len(group) <= count:
            chosen.update(group)
            if len(chosen) == count:
                break
    if len(chosen) < count:
        logger.warning(
            "held out %d questions instead of %d: the remaining questions share answers in groups too large to fit",
            len(chosen),
            count,
        )
    return chosen


# dev_size 'auto': dev questions are held out of a training side of at least this many pairs, this share of its
# questions and at most this many (enough to choose a checkpoint on, a small part of the training data).
AUTO_DEV_MIN_PAIRS = 1_000
AUTO_DEV_SHARE = 0.05
AUTO_DEV_MAX_QUESTIONS = 500


def auto_dev_size(train: Dataset) -> tuple[int | None, str]:
    """The dev questions ``dev_size: auto`` holds out of ``train``, and why, in words for the log and the report:
    :data:`AUTO_DEV_SHARE` of its questions, at most :data:`AUTO_DEV_MAX_QUESTIONS`, or None when it has fewer than
    :data:`AUTO_DEV_MIN_PAIRS` pairs (each pair is then worth more as training data)."""
    if len(train) < AUTO_DEV_MIN_PAIRS:
        return None, (
            f"none: the training side has {len(train):,} pairs, fewer than {AUTO_DEV_MIN_PAIRS:,} (set dev_size to "
            "hold out dev questions anyway)"
        )
    questions = len(set(train[QUERY]))
    count = min(AUTO_DEV_MAX_QUESTIONS, max(1, round(AUTO_DEV_SHARE * questions)))
    return count, f"{count:,} questions ({AUTO_DEV_SHARE:.0%} of {questions:,}, at most {AUTO_DEV_MAX_QUESTIONS})"


def hold_out_questions(
    dataset: Dataset, size: int | float, seed: int, key: str = "test_size"
) -> tuple[Dataset, Dataset]:
    """Split ``dataset`` into (rest, held out): ``size`` questions, with all their answers, by connected groups.

    Groups of questions that share an answer stay on one side, so no question or answer text is on both sides;
    the split is identical on every run with the same data and seed. ``key`` names the setting in errors.

    Raises:
        DataError: the split would leave nothing on one side.
    """
    groups = question_groups(dataset)
    n_questions = sum(len(group) for group in groups)
    count = question_count(size, n_questions, key)
    if count >= n_questions:
        raise DataError(
            f"{key}={size} must be smaller than the number of distinct questions ({n_questions}): lower {key}"
        )
    held_out = pick_groups(groups, count, seed)
    if not held_out:
        raise DataError(f"{key}={size} holds out no question: every question shares answers with too many others")
    is_held_out = [query in held_out for query in dataset[QUERY]]
    rest = dataset.select([i for i, flag in enumerate(is_held_out) if not flag])
    return rest, dataset.select([i for i, flag in enumerate(is_held_out) if flag])


def split_pairs(dataset: Dataset, test_size: int | float, seed: int) -> DatasetDict:
    """Hold out ``test_size`` questions, with all their answers, as the evaluation split (see
    :func:`hold_out_questions`).

    Returns:
        A DatasetDict with ``train`` and ``test``.
    """
    from datasets import DatasetDict

    train, test = hold_out_questions(dataset, test_size, seed)
    return DatasetDict({"train": train, "test": test})


@dataclass
class SharedWithHeldOut:
    """What the training side of a given split shared with its held-out side, and what ``drop_shared`` dropped."""

    rule: str  # drop_shared: "questions" or "questions_and_answers"
    question_dropped: int  # training pairs whose question is held out: always dropped (the question would leak)
    answer_shared: int  # other training pairs whose answer also answers a held-out question
    answer_dropped: int  # of those, dropped (questions_and_answers); kept under questions

    @property
    def dropped(self) -> int:
        return self.question_dropped + self.answer_dropped


def drop_shared(train: Dataset, held_out: list[Dataset], rule: str) -> tuple[Dataset, SharedWithHeldOut]:
    """Drop the training pairs of a given split that the held-out side must not share, by ``rule``.

    A given split (a split column, a separate evaluation file, a BEIR folder) can put one text on both sides. A
    training pair whose *question* is held out is always dropped: the model would be scored on a question it was
    trained on. Under ``questions`` (the BEIR and MTEB protocol) a pair whose *answer* also answers a held-out
    question is kept: the corpus is known at training time and new questions arrive for known documents. Under
    ``questions_and_answers`` it is dropped too. The held-out side itself is never changed.

    Raises:
        DataError: nothing is left to train on.
    """
    questions = {query for side in held_out for query in side[QUERY]}
    answers = {answer for side in held_out for answer in side[ANSWER]}
    keep: list[int] = []
    question_dropped = answer_shared = 0
    for index, (query, answer) in enumerate(iter_pairs(train)):
        if query in questions:
            question_dropped += 1
            continue
        if answer in answers:
            answer_shared += 1
            if rule == "questions_and_answers":
                continue
        keep.append(index)
    answer_dropped = answer_shared if rule == "questions_and_answers" else 0
    shared = SharedWithHeldOut(rule, question_dropped, answer_shared, answer_dropped)
    logger.info(
        "drop_shared: %s: dropped %d training pairs whose question is held out; %d share an answer with a held-out "
        "question (%s)",
        rule,
        question_dropped,
        answer_shared,
        "dropped" if shared.answer_dropped else "kept, as the BEIR/MTEB protocol keeps them",
    )
    if not keep:
        raise DataError(
            "every training pair shares a question or answer with the evaluation split: nothing to train"
            + ("; set drop_shared: questions to keep those that share only an answer" if shared.answer_dropped else "")
        )
    return (train.select(keep) if shared.dropped else train), shared


def split_by_column(
    dataset: Dataset, column: str, train_value: str, test_value: str, dev_value: str | None = None
) -> dict[str, Dataset]:
    """Use the data's own split: rows whose ``column`` is ``train_value`` train, ``test_value`` evaluate, and
    ``dev_value`` (when given and present) are the dev questions.

    Raises:
        DataError: the column is missing or the train or test side is empty.
    """

    if column not in dataset.column_names:
        raise DataError(
            f"split_column '{column}' not found (columns: {', '.join(dataset.column_names)}): "
            "set split_column to one of them, or null for a seeded random split"
        )
    values = [str(value) for value in dataset[column]]
    wanted = {"train": train_value, "test": test_value, **({"dev": dev_value} if dev_value is not None else {})}
    sides = {name: dataset.select([i for i, v in enumerate(values) if v == value]) for name, value in wanted.items()}
    other = len(values) - sum(len(side) for side in sides.values())
    if other:
        logger.warning(
            "%d rows have a %s other than %s and are left out, as pairs and as documents",
            other,
            column,
            " or ".join(map(repr, wanted.values())),
        )
    for key, name in (("train_split_value", "train"), ("test_split_value", "test")):
        if len(sides[name]) == 0:
            found = sorted(set(values))[:10]
            raise DataError(f"no rows with {column} == {wanted[name]!r} (values found: {found}): set {key}")
    if "dev" in sides and len(sides["dev"]) == 0:
        del sides["dev"]
    return sides


def sample_questions(dataset: Dataset, count: int | float | None, seed: int, key: str = "test_size") -> Dataset:
    """Keep ``count`` seeded questions (with all their answers) of an official evaluation split; None keeps all.
    ``key`` names the setting in errors."""
    if count is None:
        return dataset
    queries = list(dict.fromkeys(dataset[QUERY]))
    n_keep = question_count(count, len(queries), key)
    if n_keep >= len(queries):
        return dataset
    keep = pick_questions(queries, n_keep, seed)
    return dataset.select([i for i, query in enumerate(dataset[QUERY]) if query in keep])
