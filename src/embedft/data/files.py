"""A local data file before anything reads it, each problem in one line: the format and compression its name says,
what its first bytes say (a gzip, zip or Parquet file under another name), UTF-8 text with something in it, and
JSON lines read as strictly as Arrow reads them. :mod:`embedft.data.readers` then reads it with ``datasets``.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import importlib.util
import io
import json
import lzma
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from embedft.errors import DataError, first_line

if TYPE_CHECKING:
    pass

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
