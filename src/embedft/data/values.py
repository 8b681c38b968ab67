"""What a column that is read must hold, checked row by row before anything is read from it: a text column holds
text, a column of answers or negatives texts or passages, a relevance column whole numbers.

Without the check, ``str()`` would turn an object, a list, a number or ``true`` into its Python text
(``{'text': '...'}``) and the model would train on it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

TEXT = "text"  # one text, or null: a question, a split value
TEXTS = "texts"  # a text, a passage {"title", "text"}, a list of them, or null: answers and negatives
GRADE = "grade"  # a whole number (as a CSV cell holds it, its digits): a relevance grade

EXPECTED = {
    TEXT: "text",
    TEXTS: 'a text, a list of texts or a passage {"title": ..., "text": ...}',
    GRADE: "a whole number",
}


def shown(value: object, width: int = 40) -> str:
    """``value`` as JSON (how the user wrote it), cut to ``width`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # a circular structure cannot come from a file; kept safe anyway
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def found(value: object) -> str:
    """What a cell holds, in the user's words: ``an object {"text": ...}``, ``a number (5)``, ``true/false (true)``."""
    if isinstance(value, dict):
        return f"an object {shown(value)}"
    if isinstance(value, (list, tuple)):
        return f"a list {shown(value)}"
    if isinstance(value, bool):
        return f"true/false ({shown(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({shown(value)})"
    if isinstance(value, str):
        return f"the text {shown(value)}"
    if value is None:
        return "null"
    return f"a {type(value).__name__} ({shown(value)})"


def whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (``2``, ``2.0``, or either as text, as a CSV or TSV cell holds
    it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def problem(value: object, kind: str) -> str | None:
    """What is wrong with one cell of a column of ``kind`` (:func:`found` of the offending part), or None."""
    if kind == GRADE:
        return None if whole_number(value) is not None else found(value)
    if value is None or isinstance(value, str):
        return None
    if kind == TEXTS and isinstance(value, dict):
        if not isinstance(value.get("text"), str):
            return f'{found(value)} with no "text" text'
        title = value.get("title")
        return None if title is None or isinstance(title, str) else f'{found(value)} whose "title" is no text'
    if kind == TEXTS and isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (list, tuple)) or (item_problem := problem(item, TEXTS)) is not None:
                return f"a list holding {found(item) if isinstance(item, (list, tuple)) else item_problem}"
        return None
    return found(value)


def json_row_problem(row: dict, fields: dict[str, bool]) -> str | None:
    """What is wrong with a JSON-lines row whose ``fields`` (name: required) must hold text, e.g. ``has no
    'text'`` or ``'title' holds a number (5), not text``; None when nothing is."""
    for name, required in fields.items():
        value = row.get(name)
        if value is None and required:
            return f"has no '{name}'"
        if value is not None and not isinstance(value, str):
            return f"'{name}' holds {found(value)}, not text"
    return None


def needs_scan(feature: object, kind: str) -> bool:
    """Whether the values of a column with this ``datasets`` feature must be looked at one by one: a column typed
    as text (or as a list of texts, where lists are allowed) cannot hold anything else."""
    from datasets import LargeList, List, Value

    if isinstance(feature, Value):
        if kind == GRADE:
            return not (feature.dtype.startswith(("int", "uint")) or feature.dtype == "null")
        return feature.dtype not in ("string", "large_string", "null")
    if kind == TEXTS and isinstance(feature, (List, LargeList)):
        return needs_scan(feature.feature, TEXT)
    return True


def check_values(dataset: Dataset, kinds: dict[str, str], source: str, skip: bool) -> tuple[Dataset, int]:
    """Check that each column of ``kinds`` holds what its kind allows (:data:`TEXT`, :data:`TEXTS`,
    :data:`GRADE`), reading only the columns whose type does not already say so.

    Args:
        dataset: the rows as read from the file, before any column is renamed.
        kinds: the columns read, each with its kind.
        source: the data set's name, for the error.
        skip: leave out the rows with a wrong value (``skip_wrong_types``) instead of stopping.

    Returns:
        The rows without the wrong ones, and how many were left out.

    Raises:
        DataError: a row holds a wrong value (``skip`` false): the file, the row (from 1), the column and what it
            holds.
    """
    scanned = [column for column, kind in kinds.items() if needs_scan(dataset.features[column], kind)]
    if not scanned:
        return dataset, 0
    wrong: list[int] = []
    first = ""
    for start in range(0, len(dataset), 10_000):
        batch = dataset.select_columns(scanned)[start : start + 10_000]
        for offset in range(len(batch[scanned[0]])):
            for column in scanned:
                issue = problem(batch[column][offset], kinds[column])
                if issue is None:
                    continue
                message = f"{source} row {start + offset + 1}: column '{column}' holds {issue}"
                if not skip:
                    raise DataError(
                        f"{message}, not {EXPECTED[kinds[column]]}: correct the row, or set skip_wrong_types: true "
                        "to leave out such rows"
                    )
                wrong.append(start + offset)
                first = first or message
                break
    if not wrong:
        return dataset, 0
    if len(wrong) == len(dataset):
        raise DataError(
            f"every row of {source} holds a value of the wrong type (the first: {first.removeprefix(source + ' ')}): "
            "check the file and the column settings"
        )
    logger.warning(
        "skip_wrong_types: left out %d rows of %s whose value has the wrong type (the first: %s)",
        len(wrong),
        source,
        first.removeprefix(f"{source} "),
    )
    left_out = set(wrong)
    return dataset.select([index for index in range(len(dataset)) if index not in left_out]), len(wrong)
