"""Reading pairs a batch at a time, hashing texts, and cleaning: empty pairs and duplicates dropped and counted."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from embedft.columns import ANSWER, GIVEN_NEGATIVES, QUERY, RELEVANCE
from embedft.data.values import whole_number
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


@dataclass
class CleaningStats:
    """How many rows :func:`clean_pairs` kept and why it dropped the others."""

    rows_in: int  # every row read, wrong_type_dropped included
    empty_dropped: int
    duplicates_dropped: int
    rows_out: int
    wrong_type_dropped: int = 0  # left out before cleaning by skip_wrong_types (rows of the file)

    @classmethod
    def total(cls, parts: list[CleaningStats]) -> CleaningStats:
        """The counts of several cleanings added up (the sides of a given split, each cleaned alone)."""
        return cls(*(sum(getattr(part, item.name) for part in parts) for item in fields(cls)))


def iter_rows(dataset: Dataset, *columns: str, batch_size: int = 20_000) -> Iterator[tuple[Any, ...]]:
    """The values of ``columns`` in every row, read a batch at a time, so a million rows are never all Python
    objects at once."""
    for batch in dataset.select_columns(list(columns)).iter(batch_size=batch_size):
        yield from zip(*(batch[column] for column in columns))


def iter_pairs(dataset: Dataset, batch_size: int = 20_000) -> Iterator[tuple[str, str]]:
    """``(query, answer)`` of every row (:func:`iter_rows`)."""
    return iter_rows(dataset, QUERY, ANSWER, batch_size=batch_size)


def text_digest(*texts: str) -> bytes:
    """A short stable hash of one or more texts (for sets and dicts of millions of texts)."""
    return hashlib.blake2b("\0".join(texts).encode("utf-8"), digest_size=16).digest()


def clean_pairs(
    dataset: Dataset, source: str = "the data set", wrong_type_dropped: int = 0
) -> tuple[Dataset, CleaningStats]:
    """Drop pairs with an empty query or answer and exact duplicate pairs; strip surrounding whitespace.

    The rows are read a batch at a time and duplicates found by hash; when no text needed stripping, the result
    selects rows of ``dataset`` (still memory-mapped) instead of copying the texts.

    Args:
        dataset: pairs whose ``query`` and ``answer`` hold texts (or null: empty).
        source: the data set's name, for the error.
        wrong_type_dropped: rows left out before, for a value of the wrong type, counted in the stats.

    Returns:
        The cleaned data set and the counts of what was dropped.

    Raises:
        DataError: nothing is left (the file holds no rows, or none survives cleaning).
    """
    from datasets import Dataset

    keep: list[int] = []
    seen: set[bytes] = set()
    empty = duplicates = 0
    stripped = False
    for index, (query, answer) in enumerate(iter_pairs(dataset)):
        clean_query = query.strip() if query is not None else ""
        clean_answer = answer.strip() if answer is not None else ""
        if not clean_query or not clean_answer:
            empty += 1
            continue
        stripped = stripped or clean_query != query or clean_answer != answer
        digest = text_digest(clean_query, clean_answer)
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        keep.append(index)
    del seen
    rows_in = len(dataset) + wrong_type_dropped
    stats = CleaningStats(rows_in, empty, duplicates, len(keep), wrong_type_dropped)
    if not keep:
        raise DataError(empty_message(source, stats))
    others = [c for c in dataset.column_names if c not in (QUERY, ANSWER)]
    kept = dataset.select(keep) if len(keep) < len(dataset) else dataset
    if not stripped:
        return kept.select_columns([QUERY, ANSWER, *others]), stats
    clean_queries = [query.strip() for query in kept[QUERY]]
    clean_answers = [answer.strip() for answer in kept[ANSWER]]
    cleaned = Dataset.from_dict({QUERY: clean_queries, ANSWER: clean_answers})
    if others:
        cleaned = kept.select_columns(others).add_column(QUERY, clean_queries).add_column(ANSWER, clean_answers)
    return cleaned.select_columns([QUERY, ANSWER, *others]), stats


def empty_message(source: str, stats: CleaningStats) -> str:
    """Why no pair is left of ``source``, in words: it holds no rows, or each row was dropped (and why)."""
    if stats.rows_in == 0:
        return f"{source} holds no rows: it must hold (query, answer) pairs"
    reasons = [f"{stats.empty_dropped} with an empty query or answer", f"{stats.duplicates_dropped} duplicates"]
    if stats.wrong_type_dropped:
        reasons.append(f"{stats.wrong_type_dropped} left out for a value of the wrong type (skip_wrong_types)")
    return (
        f"{source} is empty after cleaning ({stats.rows_in} rows: {', '.join(reasons)}): check the file and the "
        "query_column/answer_column settings"
    )


def document_pool(answers: list[str], extra_documents: list[str] | None = None) -> list[str]:
    """The distinct documents to rank or mine from: the answers, then documents that are nobody's positive."""
    return list(dict.fromkeys([*answers, *(extra_documents or [])]))


def pairs_digest(queries: list[str], answers: list[str]) -> str:
    """A hash of a set of pairs, independent of their order: sha256 of the JSON list of sorted pairs, fed pair by
    pair so that a million pairs never become one large string (the value equals hashing that string)."""
    pairs = sorted(zip(queries, answers))
    digest = hashlib.sha256(b"[")
    for start in range(0, len(pairs), 10_000):
        chunk = json.dumps(pairs[start : start + 10_000])[1:-1]  # one C call per chunk, not per pair
        digest.update(((", " if start else "") + chunk).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()


def negatives_digest(pairs: Dataset) -> str:
    """A hash of each pair's given negatives, independent of the pairs' order (sha256 of the sorted per-row
    digests of query, answer and negatives)."""
    rows = sorted(
        text_digest(query, answer, *negatives)
        for query, answer, negatives in iter_rows(pairs, QUERY, ANSWER, GIVEN_NEGATIVES)
    )
    return hashlib.sha256(b"".join(rows)).hexdigest()


def graded_pairs(dataset: Dataset, column: str) -> Dataset:
    """The pairs with a relevance grade above 0, the grades read from ``column`` into ``relevance``.

    A grade of 0 (or less) marks a judged non-relevant pair, as in BEIR qrels: it is no positive, so it is left out
    and counted in the log.

    Raises:
        DataError: the column is missing or holds a value that is not a whole number.
    """
    if column not in dataset.column_names:
        raise DataError(
            f"relevance_column '{column}' not found (columns: {', '.join(dataset.column_names)}): set it to the "
            "column of relevance grades, or null"
        )
    grades: list[int] = []
    for row, (value,) in enumerate(iter_rows(dataset, column), start=1):
        grade = whole_number(value)
        if grade is None:
            raise DataError(
                f"relevance_column '{column}' holds {value!r} in row {row}: grades must be whole numbers "
                "(0 = not relevant, 1, 2, ...)"
            )
        grades.append(grade)
    keep = [index for index, grade in enumerate(grades) if grade > 0]
    if len(keep) < len(grades):
        logger.info(
            "relevance_column '%s': %d pairs of grade 0 are not positives: left out", column, len(grades) - len(keep)
        )
    graded = dataset.remove_columns(column).add_column(RELEVANCE, grades)
    return graded.select(keep) if len(keep) < len(grades) else graded
