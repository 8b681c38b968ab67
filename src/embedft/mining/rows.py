"""Mined rows as the Dataset the trainer reads, and their JSON-lines files in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedft.columns import ANSWER, QUERY, negative_columns, negative_columns_of
from embedft.io import atomic_path
from embedft.mining.task import MiningTask

if TYPE_CHECKING:
    from collections.abc import Iterable

    from datasets import Dataset


def triplet_dataset(task: MiningTask, rows: np.ndarray, path: Path | None = None) -> Dataset:
    """The texts of mined rows, string-typed even when there are none.

    ``rows`` is ``[n, 3]`` (query, positive, negative indices: columns ``query``, ``answer``, ``negative``) or
    ``[n, 2 + k]`` with k > 1 negatives per row (columns ``query``, ``answer``, ``negative_1`` ... ``negative_k``,
    mine_hard_negatives' n-tuple format; :func:`ntuple_rows` makes them).

    With ``path`` the rows are streamed to that JSON-lines file (through a temporary file) and read back memory-mapped,
    so a million rows never sit in memory as Python strings and as an Arrow table at once.
    """
    texts = ((task.queries[q], task.corpus[p], *(task.corpus[n] for n in ns)) for q, p, *ns in rows.tolist())
    return rows_dataset(texts, rows.shape[1] - 2, path, empty=len(rows) == 0)


def rows_dataset(
    rows: Iterable[tuple[str, ...]], num_negatives: int, path: Path | None = None, empty: bool = False
) -> Dataset:
    """Training rows of texts, ``(query, answer, negative_1, ..., negative_k)`` each, as the Dataset the trainer
    reads: columns ``query``, ``answer`` and :func:`negative_columns`, string-typed even when there are none.

    With ``path`` the rows are streamed to that JSON-lines file (through a temporary file) and read back
    memory-mapped, like mined rows (``empty``: there are none, so they are saved from an empty Dataset).

    The file is written line by line here rather than with ``Dataset.from_generator`` and ``to_json``: that would
    first build the rows as an Arrow table in the datasets cache, a second copy of a million rows on disk, and it
    would change the bytes of the files earlier runs wrote (which resumed runs read back). ``load_triplets`` reads
    the file with ``datasets``.
    """
    import json

    from datasets import Dataset, Features, Value

    negatives = negative_columns(num_negatives)
    names = [QUERY, ANSWER, *negatives]
    features = Features({column: Value("string") for column in names})
    if path is None or empty:
        rows = list(rows)
        triplets = Dataset.from_dict(
            {name: [row[i] for row in rows] for i, name in enumerate(names)}, features=features
        )
        if path is not None:
            save_triplets(triplets, path)
        return triplets
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(dict(zip(names, row)), ensure_ascii=False) + "\n")
    return load_triplets(path)


def ntuple_rows(rows: np.ndarray, num_negatives: int) -> np.ndarray:
    """Mined ``[n, 3]`` rows as training rows: unchanged for one negative, else one ``(query, positive, negative_1,
    ..., negative_k)`` row per pair, ``[n / k, 2 + k]`` (:func:`mine` leaves exactly k consecutive rows per pair)."""
    if num_negatives == 1:
        return rows
    if len(rows) % num_negatives:
        raise ValueError(f"{len(rows)} mined rows are not whole groups of {num_negatives} negatives")
    return np.concatenate([rows[::num_negatives, :2], rows[:, 2].reshape(-1, num_negatives)], axis=1)


def save_triplets(triplets: Dataset, path: Path) -> None:
    """Write triplets as JSON lines, atomically (:func:`~embedft.io.atomic_path`)."""
    with atomic_path(path) as temporary:
        triplets.to_json(temporary, lines=True, force_ascii=False)


def load_triplets(path: str | Path) -> Dataset:
    """Read mined rows saved with ``Dataset.to_json(..., lines=True)`` or :func:`triplet_dataset`: triplets or
    n-tuples, their columns in training order (query, answer, then the negatives), which the loss reads them by."""
    from datasets import load_dataset

    triplets = load_dataset("json", data_files=str(path), split="train")
    if not {QUERY, ANSWER} <= set(triplets.column_names):
        return triplets
    order = [QUERY, ANSWER, *negative_columns_of(triplets)]
    return triplets if triplets.column_names == order else triplets.select_columns(order)
