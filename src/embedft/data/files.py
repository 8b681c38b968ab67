"""A local data file as ``datasets`` reads it, each problem in one line: the format and compression its name says,
what its first bytes say (a gzip, zip or Parquet file under another name), UTF-8, a CSV's delimiter and header, and
the reader's own errors put in words that name the file, the line and the likely fix.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import importlib.util
import io
import json
import lzma
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embedft.errors import DataError, first_line

if TYPE_CHECKING:
    from datasets import Dataset

# The loader of each file name ending (before a compression ending), as datasets names its packaged loaders.
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
ENDINGS = {kind: ending for ending, kind in COMPRESSIONS.items()}
# What a file's first bytes say it is; text has no mark.
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
    b"PAR1": "parquet",
}
CSV_DELIMITERS = ",;\t|"  # what csv_delimiter: null may guess
SNIFF_BYTES = 64 * 1024  # the start of a CSV file whose lines give its delimiter and header
SUPPORTED = ".jsonl, .json, .csv, .tsv or .parquet (the text ones also compressed: .gz, .bz2, .xz, .zst)"


@dataclass(frozen=True)
class DataFile:
    """A data file and what its name says: the format ending (``.jsonl``) and the compression (``gzip`` or None)."""

    path: Path
    ending: str
    compression: str | None

    @classmethod
    def of(cls, path: Path) -> DataFile:
        """Read the endings of ``path``'s name.

        Raises:
            DataError: an ending no loader reads (a compressed Parquet file too: Parquet compresses inside).
        """
        suffixes = [suffix.lower() for suffix in path.suffixes] or [""]
        compression = COMPRESSIONS.get(suffixes[-1])
        ending = suffixes[-2] if compression is not None and len(suffixes) > 1 else suffixes[-1]
        if ending not in FORMATS or (compression is not None and FORMATS[ending] == "parquet"):
            shown = "".join(path.suffixes[-2:]) if compression is not None else path.suffix
            raise DataError(f"cannot read {path}: unsupported extension '{shown}', use {SUPPORTED}")
        return cls(path, ending, compression)

    @property
    def loader(self) -> str:
        """The ``datasets`` loader: ``json``, ``csv`` or ``parquet``."""
        return FORMATS[self.ending]

    @property
    def stem(self) -> str:
        """The name without its format and compression endings (``pairs`` of ``pairs.jsonl.gz``)."""
        name = self.path.name
        cut = len(self.ending) + (len(ENDINGS[self.compression]) if self.compression else 0)
        return name[: len(name) - cut] if self.ending else name


def content_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is (``gzip``, ``zip``, ``parquet``, ...), or None for text."""
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def check_first_bytes(file: DataFile) -> None:
    """Raise a DataError when the file's first bytes say something other than its name (a gzip file named
    ``.jsonl``, a Parquet file named ``.csv``, a ``.gz`` that is plain text), with the name to give it."""
    with file.path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise DataError(f"{file.path} is empty: it must hold (query, answer) pairs")
    kind = content_kind(head)
    expected = file.compression or ("parquet" if file.loader == "parquet" else None)
    if kind == expected:
        return
    path, stem = file.path, file.stem
    if kind == "zip":
        raise DataError(f"{path} is a zip archive: unzip it and read the file inside")
    if kind == "parquet":
        raise DataError(f"{path} is a Parquet file: name it {stem}.parquet")
    if kind is not None:
        ending = ENDINGS[kind]
        if file.loader == "parquet":
            raise DataError(
                f"{path} is {kind}-compressed, not Parquet: name it {stem}.jsonl{ending} or {stem}.csv{ending} by "
                "what it holds"
            )
        raise DataError(f"{path} is {kind}-compressed: name it {stem}{file.ending}{ending}")
    if file.compression is not None:
        raise DataError(f"{path} is not {file.compression}-compressed: name it {stem}{file.ending}")
    raise DataError(
        f"{path} is not a Parquet file (it starts like text): name it {stem}.jsonl or {stem}.csv by what it holds"
    )


def open_binary(path: Path) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed as its last ending says (``.gz``, ``.bz2``, ``.xz``,
    ``.zst``)."""
    compression = COMPRESSIONS.get(path.suffix.lower())
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zstd":
        if importlib.util.find_spec("zstandard") is None:
            raise DataError(f"reading {path} needs the zstandard package: pip install zstandard, or decompress it")
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
    return path.open("rb")


@contextmanager
def reading(path: Path) -> Iterator[IO[bytes]]:
    """:func:`open_binary`, with a damaged or truncated compressed file turned into a DataError."""
    try:
        with open_binary(path) as handle:
            yield handle
    except PermissionError:
        raise
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        if path.suffix.lower() not in COMPRESSIONS:
            raise
        raise DataError(
            f"{path} is damaged or cut short ({first_line(exc)}): compress it again from the original"
        ) from None
    except Exception as exc:  # zstandard raises its own ZstdError
        if path.suffix.lower() != ".zst" or type(exc).__module__.split(".")[0] != "zstandard":
            raise
        raise DataError(f"{path} is damaged or cut short ({first_line(exc)}): compress it again") from None


@dataclass(frozen=True)
class Text:
    """What reading a text file through showed: its size and whether it holds anything."""

    size: int  # bytes, decompressed
    blank: bool  # nothing but white space (and a byte-order mark)


def check_utf8(path: Path, chunk_bytes: int = 1 << 20) -> Text:
    """Raise a DataError naming the first line that is not UTF-8 text (Arrow would read it silently), or that holds
    a NUL byte (UTF-16 text or a binary file); a compressed file is checked as it decompresses."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    size = 0
    blank = True
    with reading(path) as handle:
        while chunk := handle.read(chunk_bytes):
            size += len(chunk)
            blank = blank and not chunk.strip(b" \t\r\n" + codecs.BOM_UTF8)
            if line == 1 and chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise DataError(f"{path} is UTF-16 text: save it as UTF-8")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                raise DataError(f"{path} is not UTF-8 text (line {line}): save it as UTF-8") from None
            if b"\0" in chunk:
                line += chunk[: chunk.index(b"\0")].count(b"\n")
                raise DataError(
                    f"{path} holds a NUL byte (line {line}), which no text file holds: save it as UTF-8 text"
                )
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (it ends inside a character): save it as UTF-8") from None
    return Text(size, blank)


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


class NotJson(ValueError):
    """A value Python's json reads but JSON and Arrow do not."""


def whole_json_number(text: str) -> int:
    """A JSON integer, refused when Arrow cannot hold it (more than 64 bits)."""
    number = int(text)
    if not -(2**63) <= number < 2**64:
        raise NotJson(f"holds the number {text[:24]}, larger than 64 bits: write it as text")
    return number


def not_a_number(name: str) -> None:
    """``NaN`` and ``Infinity``, which Python's json reads and JSON does not."""
    raise NotJson(f"holds {name}, which is not JSON: write null or a number")


def strict_json(text: str) -> object:
    """``json.loads`` as strict as Arrow's reader: no NaN or Infinity, no integer beyond 64 bits."""
    return json.loads(text, parse_int=whole_json_number, parse_constant=not_a_number)


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for each non-blank line of a JSON-lines file (compressed too, by its ending); a
    DataError names a bad line."""
    with reading(path) as binary, io.TextIOWrapper(binary, encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = strict_json(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {number} is not valid JSON ({exc.msg}): fix or remove that line"
                ) from None
            except NotJson as exc:
                raise DataError(f"{path} line {number} {exc}") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number} is not a JSON object: each line must be {{...}}")
            yield number, row


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


def check_data_file(file: DataFile) -> Text | None:
    """The checks before ``datasets`` reads a file: its first bytes match its name, a text file is UTF-8 and holds
    more than white space.

    Returns:
        A text file's size (decompressed); None for Parquet.
    """
    check_first_bytes(file)
    if file.loader == "parquet":
        return None
    text = check_utf8(file.path)
    if text.blank:
        raise DataError(f"{file.path} holds no rows: it must hold (query, answer) pairs")
    return text


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
