"""Row layouts read as (query, answer) pairs: plain pairs, FlagEmbedding and Tevatron rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, FORMAT_COLUMNS, GIVEN_NEGATIVES, QUERY
from embedft.data.readers import CSV_DELIMITERS
from embedft.data.values import TEXT, TEXTS, check_values
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

DEFAULT_ANSWER_COLUMN = ANSWER  # RunConfig.answer_column's default: a user who names another means pairs data

FORMAT_NAMES = {"flagembedding": "FlagEmbedding", "tevatron": "Tevatron"}

LIST_TEXT_SAMPLE = 100  # values of a text column looked at for lists written as text


def detect_format(columns: list[str], data_format: str, answer_column: str, negative_column: str | None = None) -> str:
    """The row layout of data with ``columns``: ``data_format`` itself unless it is ``auto``.

    ``auto`` reads pairs whenever ``answer_column`` is a column (so a plain file is read as it always was), else
    Tevatron rows when there is ``positive_passages``, else FlagEmbedding rows when there is ``pos``, else pairs
    (whose missing answer column is then the error). A pair column the user named (an ``answer_column`` other than
    the default, or a ``negative_column``) keeps pairs, so a misspelt column is reported instead of read otherwise.
    """
    if data_format != "auto":
        return data_format
    named_pair_columns = answer_column != DEFAULT_ANSWER_COLUMN or negative_column is not None
    if answer_column not in columns and not named_pair_columns:
        for name in ("tevatron", "flagembedding"):
            if FORMAT_COLUMNS[name][0] in columns:
                return name
    return "pairs"


def is_text_feature(feature: object) -> bool:
    """Whether a datasets feature holds one text (or null) per row, so the column is read as it is."""
    from datasets import Value

    return isinstance(feature, Value) and feature.dtype in ("string", "large_string", "null")


def delimiter_hint(columns: list[str], missing: str) -> str:
    """A hint for a CSV read with the wrong delimiter: one column whose name holds ``missing`` and a separator."""
    for name in columns:
        for delimiter in CSV_DELIMITERS:
            if missing in name and delimiter in name:
                value = '"\\t"' if delimiter == "\t" else f"'{delimiter}'"
                return f" (the file looks separated by {value}: set csv_delimiter: {value})"
    return ""


def is_list_feature(feature: object) -> bool:
    """Whether a datasets feature holds a list per row (lists of texts, of passages, ...)."""
    from datasets import LargeList, List

    return isinstance(feature, (List, LargeList, list))


def to_pairs(
    dataset: Dataset,
    data_format: str,
    query_column: str,
    answer_column: str,
    negative_column: str | None,
    source: str,
    checked: dict[str, str] | None = None,
    skip_wrong_types: bool = False,
) -> tuple[Dataset, int]:
    """Turn rows of any supported layout into pairs: ``query``, ``answer``, then ``given_negatives`` when the data
    has negatives, then the other columns; with the number of rows left out for a value of the wrong type.

    Every column read is checked first (:func:`~embedft.data.values.check_values`): the query a text, answers and
    negatives texts or passages, and the columns of ``checked`` (e.g. ``{split_column: "text"}``) as their kind says;
    a wrong value stops with its row, or with ``skip_wrong_types`` its row is left out and counted.

    Plain pairs with one text per cell are only renamed (the data stays memory-mapped). A list of answers, a
    FlagEmbedding row ``{query, pos: [...], neg: [...]}`` or a Tevatron row ``{query, positive_passages: [{docid,
    title, text}], negative_passages: [...]}`` gives one pair per positive, each carrying the row's negatives; a
    passage is read as ``title + " " + text`` (the text alone without a title), as corpus_file rows are. A row with no
    positive gives one pair with an empty answer, which cleaning drops and counts. Other list columns (e.g.
    FlagEmbedding's ``pos_scores``) are left out; scalar ones (e.g. ``query_id``, a split column) are kept.

    Raises:
        DataError: a column is missing, the query column holds lists, a value has the wrong type, or a column holds
            lists written as text.
    """
    columns = dataset.column_names
    layout = detect_format(columns, data_format, answer_column, negative_column)
    if layout == "pairs":
        positive_column = answer_column
        wanted = [("query_column", query_column), ("answer_column", answer_column)]
        wanted += [("negative_column", negative_column)] if negative_column is not None else []
        fix = "set {key} to one of them"
    else:
        positive_column, negative_column = FORMAT_COLUMNS[layout]
        negative_column = negative_column if negative_column in columns else None
        wanted = [("query_column", query_column), ("data_format", positive_column)]
        fix = f"{FORMAT_NAMES[layout]} rows need query_column and '{positive_column}' (or set data_format)"
    for key, column in wanted:
        if column not in columns:
            raise DataError(
                f"column '{column}' not found in {source} (columns: {', '.join(columns)}): {fix.format(key=key)}"
                + delimiter_hint(columns, column)
            )
    if layout == "pairs" and query_column == answer_column:
        raise DataError(f"query_column and answer_column are both '{query_column}': set them to different columns")
    if is_list_feature(dataset.features[query_column]):
        raise DataError(
            f"column '{query_column}' of {source} holds lists, and a question is one text: set query_column to a "
            "column of texts"
        )
    kinds = {query_column: TEXT, positive_column: TEXTS, **({negative_column: TEXTS} if negative_column else {})}
    kinds |= {column: kind for column, kind in (checked or {}).items() if column in columns and column not in kinds}
    dataset, wrong = check_values(dataset, kinds, source, skip_wrong_types)
    for column in (query_column, positive_column, negative_column):
        if column is not None:
            refuse_text_lists(dataset, column, source)
    if (
        layout == "pairs"
        and negative_column is None
        and all(is_text_feature(dataset.features[c]) for c in (query_column, answer_column))
    ):
        return rename_pair_columns(dataset, query_column, answer_column), wrong
    if layout != "pairs":
        logger.info(
            "Reading %s as %s rows: one pair per '%s' item%s",
            source,
            FORMAT_NAMES[layout],
            positive_column,
            f", '{negative_column}' as given negatives" if negative_column else "",
        )
    pairs = explode_rows(dataset, query_column, positive_column, negative_column, source)
    unused = negative_column is None and GIVEN_NEGATIVES in pairs.column_names
    return (pairs.remove_columns(GIVEN_NEGATIVES) if unused else pairs), wrong


def refuse_text_lists(dataset: Dataset, column: str, source: str) -> None:
    """Raise a DataError when a text column holds lists written as text (``"['a', 'b']"``, what a CSV holds after
    a list column was saved to it): read as text, each list would silently become one answer."""
    import ast

    from datasets import Value

    feature = dataset.features[column]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        return
    values = [v.strip() for v in dataset.select(range(min(LIST_TEXT_SAMPLE, len(dataset))))[column] if v and v.strip()]
    if not values or not all(v.startswith("[") and v.endswith("]") for v in values):
        return
    try:
        if not all(isinstance(ast.literal_eval(v), list) for v in values):
            return
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return
    raise DataError(
        f"column '{column}' of {source} holds lists written as text (e.g. {values[0][:40]!r}): save the data as "
        ".jsonl or .parquet, where a list is read as several answers or negatives, or give one text per row"
    )


def passage_texts(value: object, column: str, row: int) -> list[str]:
    """The texts of one cell: a text, a passage ``{title, text}``, or a list of either; None is no text.

    A passage is ``title + " " + text``, or the text alone when the title is missing or empty.

    Raises:
        DataError: the cell holds something else (the column and row are named).
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in passage_texts(item, column, row)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return [with_title(value.get("title"), value["text"])]
    raise DataError(
        f"column '{column}' row {row + 1} holds {str(value)[:60]!r}: each item must be a text or a passage "
        '{"title": ..., "text": ...}'
    )


def with_title(title: object, text: str) -> str:
    """``title + " " + text`` (both stripped), or the text alone when there is no title: how a titled passage
    (Tevatron, corpus_file) becomes one document."""
    return f"{title.strip()} {text.strip()}" if isinstance(title, str) and title.strip() else text


def explode_rows(
    dataset: Dataset, query_column: str, positive_column: str, negative_column: str | None, source: str
) -> Dataset:
    """One row per (query, positive) of rows that hold lists, each with the row's negatives in ``given_negatives``
    (read a batch at a time with ``Dataset.map``, so large data never sits in memory as Python strings)."""
    from datasets import Features, List, Value

    used = {query_column, positive_column, negative_column}
    kept = [
        c
        for c in dataset.column_names
        if c not in used and c not in (QUERY, ANSWER, GIVEN_NEGATIVES) and not is_list_feature(dataset.features[c])
    ]
    dropped = [c for c in dataset.column_names if c not in used and c not in kept]
    if dropped:
        logger.info("Left out the columns %s of %s: they are not read", ", ".join(dropped), source)
    features = Features(
        {
            QUERY: Value("string"),
            ANSWER: Value("string"),
            GIVEN_NEGATIVES: List(Value("string")),
            **{c: dataset.features[c] for c in kept},
        }
    )

    def explode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for i, query in enumerate(batch[query_column]):
            positives = passage_texts(batch[positive_column][i], positive_column, indices[i]) or [""]
            negatives = (
                passage_texts(batch[negative_column][i], negative_column, indices[i]) if negative_column else []
            )
            for answer in positives:
                out[QUERY].append("" if query is None else str(query))
                out[ANSWER].append(answer)
                out[GIVEN_NEGATIVES].append(negatives)
                for column in kept:
                    out[column].append(batch[column][i])
        return out

    import datasets

    datasets.disable_progress_bars()
    try:
        return dataset.map(
            explode, batched=True, with_indices=True, remove_columns=dataset.column_names, features=features
        )
    finally:
        datasets.enable_progress_bars()


def rename_pair_columns(dataset: Dataset, query_column: str, answer_column: str) -> Dataset:
    """Rename the configured columns to ``query``/``answer`` and move them first (:func:`to_pairs` has checked that
    both exist and differ)."""
    columns = dataset.column_names
    # Free the standard names first, in case the file has an unrelated column called 'query' or 'answer'.
    others = [c for c in columns if c not in (query_column, answer_column)]
    dataset = dataset.remove_columns([c for c in others if c in (QUERY, ANSWER)])
    dataset = dataset.rename_columns({query_column: "__query__", answer_column: "__answer__"})
    dataset = dataset.rename_columns({"__query__": QUERY, "__answer__": ANSWER})
    rest = [c for c in dataset.column_names if c not in (QUERY, ANSWER)]
    return dataset.select_columns([QUERY, ANSWER, *rest])
