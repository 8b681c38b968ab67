"""Reading a checked data file (:mod:`embedft.data.files`) with ``datasets``: a CSV's delimiter and header and every
cell as text, a JSON file in one block where that is safe, a Parquet file's footer, and the reader's own errors put
in words that name the file, the line and the likely fix.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.data.files import (
    DataFile,
    NotJson,
    check_data_file,
    iter_json_lines,
    reading,
    strict_json,
)
from embedft.errors import DataError, first_line

if TYPE_CHECKING:
    from datasets import Dataset

CSV_DELIMITERS = ",;\t|"  # what csv_delimiter: null may guess
SNIFF_BYTES = 64 * 1024  # the start of a CSV file whose lines give its delimiter and header


@dataclass(frozen=True)
class CsvLayout:
    """A CSV file's delimiter and header, read from its first lines."""

    delimiter: str
    header: list[str]

    def reader_options(self) -> dict[str, Any]:
        """What the ``csv`` loader is given: the delimiter, and every cell read as the text it is (``007`` stays
        ``007``, ``NA`` stays ``NA``, an empty cell is an empty text)."""
        return {
            "sep": self.delimiter,
            "converters": {index: str for index in range(len(self.header))},
            "keep_default_na": False,
            "encoding": "utf-8",
        }


def csv_layout(file: DataFile, delimiter: str | None = None) -> CsvLayout:
    """The delimiter (``delimiter``, a tab for ``.tsv``, else guessed by :class:`csv.Sniffer` among
    :data:`CSV_DELIMITERS`, a comma when it cannot tell) and the header of a CSV file, checked on its first lines.

    Raises:
        DataError: the file has no lines, a header and no rows, or a row of its first lines with more cells than
            the header (a delimiter inside an unquoted text; the reader would shift the columns or skip cells).
    """
    with reading(file.path) as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(SNIFF_BYTES)
        whole = not handle.read(1)
    if delimiter is None:
        delimiter = "\t" if file.ending == ".tsv" else sniff_delimiter(sample)
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if row:
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        if whole:
            raise DataError(
                f"{file.path} line {reader.line_num}: {exc}: {CSV_FIX.format(delimiter=delimiter)}"
            ) from None
    if not whole and rows:
        rows.pop()  # the sample may end inside that row
    if not rows:
        raise DataError(f"{file.path} has no lines: it must hold a header and (query, answer) rows")
    header = rows[0][1]
    if len(rows) == 1 and whole:
        raise DataError(
            f"{file.path} has a header ({', '.join(header)}) and no rows: add one row a pair below the header"
        )
    for line, row in rows[1:]:
        if len(row) > len(header):
            raise too_many_cells(file.path, line, len(row), len(header), delimiter)
    return CsvLayout(delimiter, header)


CSV_FIX = "put each text that holds '{delimiter}', a quote or a line break in double quotes, or set csv_delimiter"


def too_many_cells(path: Path, line: int, cells: int, header: int, delimiter: str) -> DataError:
    """The error of a CSV row with more cells than the header."""
    shown = "a tab" if delimiter == "\t" else f"'{delimiter}'"
    return DataError(
        f"{path} line {line} has {cells} cells separated by {shown}, the header {header}: "
        f"{CSV_FIX.format(delimiter=delimiter)}"
    )


def sniff_delimiter(sample: str, lines: int = 20) -> str:
    """The delimiter :class:`csv.Sniffer` finds in the first ``lines`` of ``sample``; a comma when it cannot tell."""
    head = "\n".join(sample.splitlines()[:lines])
    try:
        return csv.Sniffer().sniff(head, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind ``exc`` (datasets wraps the reader's error in its own)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def read_error(exc: Exception, file: DataFile, layout: CsvLayout | None) -> DataError:
    """The reader's error on ``file`` as one line with the file, the line and the likely fix."""
    cause = root_cause(exc)
    message = first_line(cause)
    if "corresponds to no data" in str(exc) or "corresponds to no data" in message:
        return DataError(f"{file.path} holds no rows: it must hold (query, answer) pairs")
    if layout is not None:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if fields:
            header, line, cells = (int(group) for group in fields.groups())
            return too_many_cells(file.path, line, cells, header, layout.delimiter)
        quote = re.search(r"EOF inside string starting at row (\d+)", message)
        if quote:
            line = int(quote.group(1)) + 1
            return DataError(f"{file.path} line {line}: a quoted text starts there and never ends: close its quote")
    if file.loader == "json":
        check_json(file)
    return DataError(f"cannot read {file.path}: {message}")


def check_json(file: DataFile) -> None:
    """Raise a DataError naming the first line of a JSON-lines file that is not a JSON object, or where a ``.json``
    file stops being valid JSON."""
    if file.ending == ".jsonl":
        for _ in iter_json_lines(file.path):
            pass
        return
    with reading(file.path) as handle:
        text = handle.read().decode("utf-8-sig")
    try:
        strict_json(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{file.path} is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}): fix it there, or "
            "write one object a line as .jsonl"
        ) from None
    except NotJson as exc:
        raise DataError(f"{file.path} {exc}") from None


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """``datasets`` without its progress bars and its own error lines (its errors are raised, and put in words here,
    so that the user sees one line)."""
    import datasets

    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        datasets.enable_progress_bars()


# Arrow's JSON reader can crash the process (SIGSEGV, pyarrow 26) when one batch of JSON lines is parsed in several
# blocks and a column changes type between them. datasets parses a batch in blocks of chunksize // 32 bytes; a JSON
# file up to this size is read as one block (datasets may rewrite lines up to 6 times longer, as \u escapes).
JSON_ONE_BLOCK_BYTES = 32 << 20


def json_options(size: int) -> dict[str, int]:
    """The ``json`` loader's options for a file of ``size`` bytes of text: one block when it is small enough."""
    if size > JSON_ONE_BLOCK_BYTES:
        return {}
    return {"chunksize": 32 * (6 * size + (1 << 20))}


def parquet_rows(path: Path) -> int:
    """The number of rows a Parquet file's footer says it holds.

    Raises:
        DataError: the footer cannot be read: the file starts as Parquet (:func:`check_first_bytes`) but is cut
            short or damaged.
    """
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is a Parquet file cut short or damaged ({first_line(exc)}): write it again") from None


def load_data_file(path: Path, csv_delimiter: str | None = None) -> Dataset:
    """Read one data file with the ``datasets`` loader its name says, after :func:`check_data_file`; a CSV or TSV
    file with its delimiter and every cell as text (:func:`csv_layout`).

    Raises:
        DataError: the name, the bytes, the encoding or the content is wrong, with the line where the reader
            stopped and the likely fix.
    """
    import datasets

    file = DataFile.of(path)
    text = check_data_file(file)
    if file.loader == "parquet" and parquet_rows(path) == 0:
        raise DataError(f"{path} holds no rows: it must hold (query, answer) pairs")
    layout = csv_layout(file, csv_delimiter) if file.loader == "csv" else None
    options = layout.reader_options() if layout is not None else {}
    if file.loader == "json" and text is not None:
        options = json_options(text.size)
    try:
        return datasets.load_dataset(file.loader, data_files=str(path), split="train", **options)
    except (DataError, PermissionError):
        raise
    except Exception as exc:  # datasets, pandas and pyarrow raise many types for malformed files
        raise read_error(exc, file, layout) from None
