"""Any data file and any config, generated: ``embedft train --dry-run`` either works, showing only texts the file
holds, or stops with exactly one ``error:`` line and exit status 2, no traceback, and nothing written.

The inputs are drawn by hypothesis: JSON lines, JSON, CSV, TSV and Parquet files in several encodings, compressed or
not, named for what they are or not, cut short; cells of every type, empty and huge; configs with wrong types in any
key, keys given twice or missing, broken YAML, and overrides given twice. The default profile (``ci``) runs a fixed
set of examples in seconds; ``HYPOTHESIS_PROFILE=long`` runs 10,000 new ones.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import json
import lzma
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from embedft.cli import app, common
from embedft.config.schema import all_keys
from embedft.errors import DataError
from embedft.text import shorten
from tests.conftest import run_script

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=10_000, derandomize=False)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

COLUMNS = ["query", "answer", "question", "reply", "split", "grade", "neg", "pos"]
WORDS = ["How long does a permit take?", "Six weeks.", "q1", "a1", "train", "test", " ", "", "NA", "007", "1"]
HUGE = "x" * 100_000
COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]
FORMATS = [".jsonl", ".jsonl", ".json", ".csv", ".csv", ".tsv", ".parquet"]
CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["auto", "", "query", "reply", "off", "cpu", "cuda", ";", "ab", "packaged:construction-faq"]),
    st.lists(st.integers(-2, 600), max_size=3),
    st.dictionaries(st.sampled_from(["a", "text"]), st.integers(), max_size=2),
)


def texts(sound: bool = False) -> st.SearchStrategy[str]:
    """Texts: everyday words, empty and blank ones, a huge one, or anything (control characters included); ``sound``:
    mostly distinct and not blank."""
    if sound:
        words = st.from_regex(r"[A-Za-z0-9 ?,;|'.]{1,30}", fullmatch=True)
        return st.one_of(words, st.text(min_size=1, max_size=30), st.integers(0, 99).map(lambda n: f"{n} {HUGE}"))
    return st.one_of(st.sampled_from(WORDS), st.just(HUGE), st.text(max_size=30))


def cells() -> st.SearchStrategy[Any]:
    """A cell: mostly a text, else a value of another type a JSON file can hold."""
    wrong = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.lists(st.one_of(texts(), st.integers()), max_size=3),
        st.dictionaries(st.sampled_from(["text", "title", "docid"]), st.one_of(texts(), st.integers()), max_size=3),
    )
    return st.one_of(texts(), texts(), texts(), wrong)


@dataclass
class DataCase:
    """A generated data file: its rows, how it is written, and what happens to its bytes."""

    rows: list[dict[str, Any]]
    ending: str
    encoding: str
    compression: str
    misnamed: bool
    cut: float | None
    delimiter: str
    ascii_json: bool
    strings: set[str] = field(default_factory=set)  # every text a reader may show, as written

    @property
    def name(self) -> str:
        """The file name: the format ending, then the compression ending unless misnamed (or one without
        compression when misnamed)."""
        if self.misnamed:
            return f"pairs{self.ending}" if self.compression else f"pairs{self.ending}.gz"
        return f"pairs{self.ending}{self.compression}"


@st.composite
def data_cases(draw: st.DrawFn, sound: bool) -> DataCase:
    """A data file. ``sound``: query and answer columns of texts in at least two rows, UTF-8, named for what it is
    and whole, so that the run mostly works; else any columns, missing cells, cells of any type, any encoding, a
    misleading name and a cut."""
    columns = draw(st.lists(st.sampled_from(COLUMNS), max_size=4, unique=True))
    if sound or draw(st.integers(0, 3)) > 0:
        columns = ["query", "answer", *[c for c in columns if c not in ("query", "answer")]]
    cell = texts(sound=True) if sound else cells()
    whole, some = dict.fromkeys(columns, cell), dict.fromkeys(columns, cell)
    row = st.fixed_dictionaries(whole) if sound else st.fixed_dictionaries({}, optional=some)
    rows = draw(
        st.lists(row.map(lambda r: {c: r[c] for c in columns if c in r}), min_size=3 if sound else 0, max_size=8)
    )
    return DataCase(
        rows=rows,
        ending=draw(st.sampled_from(FORMATS)),
        encoding=draw(st.sampled_from(["utf-8", "utf-8-sig"] if sound else ENCODINGS)),
        compression=draw(st.sampled_from(["", "", "", ".gz", ".bz2", ".xz"])),
        misnamed=not sound and draw(st.integers(0, 4)) == 0,
        cut=None if sound else draw(st.one_of(st.none(), st.floats(0, 1))),
        delimiter=draw(st.sampled_from([",", ",", ";", "\t", "|"])),
        ascii_json=draw(st.booleans()),
    )


def csv_cell(value: Any) -> str:
    """What a spreadsheet writes for a cell: its text (a CSV holds nothing but text)."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def all_strings(value: Any) -> list[str]:
    """Every text inside a JSON value (in lists, and in objects as their values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in all_strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in all_strings(item)]
    return []


def file_bytes(case: DataCase) -> bytes:
    """The file's bytes as the case says: written, encoded, compressed and cut."""
    strings = {text for row in case.rows for value in row.values() for text in all_strings(value)}
    if case.ending in (".csv", ".tsv"):
        columns = list(dict.fromkeys(column for row in case.rows for column in row)) or ["query"]
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if case.ending == ".tsv" else case.delimiter)
        writer.writerow(columns)
        for row in case.rows:
            writer.writerow([csv_cell(row.get(column)) for column in columns])
        strings = {csv_cell(row.get(column)) for row in case.rows for column in columns}
        text = out.getvalue()
    elif case.ending == ".json":
        text = json.dumps(case.rows, ensure_ascii=case.ascii_json)
    else:
        text = "".join(json.dumps(row, ensure_ascii=case.ascii_json) + "\n" for row in case.rows)
    data = parquet_bytes(case.rows) if case.ending == ".parquet" else text.encode(case.encoding, errors="replace")
    if case.ending != ".parquet":  # what a lossy encoding left of each text
        strings = {s.encode(case.encoding, errors="replace").decode(case.encoding, errors="replace") for s in strings}
    case.strings = strings
    if case.compression:
        data = COMPRESSORS[case.compression](data)
    return data[: int(len(data) * case.cut)] if case.cut is not None else data


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The rows as a Parquet file, or as JSON lines when Arrow cannot type a column (a misnamed file, then)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    try:
        pq.write_table(pa.Table.from_pylist(rows), out)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    return out.getvalue()


@st.composite
def configs(draw: st.DrawFn, data_path: str, sound: bool) -> tuple[str, list[str]]:
    """A config's YAML text and the overrides on the command line: the data file and a small test_size; unless
    ``sound``, also column settings the data may not match, and one fault: a wrong value in any key, a key given
    twice, ``dataset_name`` missing, broken YAML, or an override given twice."""
    raw: dict[str, Any] = {"output_dir": "out", "test_size": draw(st.sampled_from([1, 1, 1, 2, 0.5]))}
    raw["dataset_name"] = data_path
    settings = [("skip_wrong_types", [True]), ("dev_size", [None, 1])]
    if not sound:  # columns the data may lack, a layout it may not have, a delimiter it may not use
        settings += [
            ("query_column", ["query", "question"]),
            ("answer_column", ["answer", "reply"]),
            ("data_format", ["auto", "pairs", "flagembedding", "tevatron"]),
            ("split_column", ["split"]),
            ("relevance_column", ["grade"]),
            ("negative_column", ["neg"]),
            ("csv_delimiter", [",", ";", "\t", "|"]),
        ]
    for key, choices in settings:
        if draw(st.integers(0, 5)) == 0:
            raw[key] = draw(st.sampled_from(choices))
    fault = (
        "none" if sound else draw(st.sampled_from(["none", "value", "value", "twice", "missing", "yaml", "override"]))
    )
    event(f"config fault: {fault}")
    if fault == "value":
        raw[draw(st.sampled_from(all_keys()))] = draw(CONFIG_VALUES)
    if fault == "missing":
        del raw["dataset_name"]
    lines = [yaml.safe_dump({key: value}).strip() for key, value in nested(raw).items()]
    if fault == "twice":
        lines.append(draw(st.sampled_from(lines)))
    if fault == "yaml":
        lines.insert(draw(st.integers(0, len(lines))), "num_epochs 3")
    overrides = [f"seed={seed}" for seed in draw(st.lists(st.integers(0, 5), min_size=2, max_size=2))]
    return "\n".join(lines) + "\n", overrides if fault == "override" else []


def nested(raw: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (``mining.batch_size``) as YAML sections."""
    tree: dict[str, Any] = {}
    for key, value in raw.items():
        section, _, leaf = key.rpartition(".")
        (tree.setdefault(section, {}) if section else tree)[leaf or key] = value
    return tree


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``folder``, with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")
    }


def dry_run(argv: list[str]) -> tuple[int, str, str]:
    """``embedft train --dry-run ARGV`` in this process, through the console entry's error handling."""
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            common.run(lambda _: app.main(["train", "--dry-run", *argv]))
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def inside(folder: Path):
    """Work in ``folder``, with the datasets cache in a folder of its own next to it (never the user's)."""
    import datasets

    before, cache = Path.cwd(), datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = folder.parent / "datasets-cache"
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
        datasets.config.HF_DATASETS_CACHE = cache


@settings(PROFILE)
@given(sound=st.sampled_from(["data", "config", "both", "neither"]), data=st.data())
def test_any_input_runs_or_stops_with_one_error_line_and_writes_nothing(sound, data):
    case = data.draw(data_cases(sound in ("data", "both")))
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "work"
        folder.mkdir()
        data_file = folder / case.name
        data_file.write_bytes(file_bytes(case))
        text, overrides = data.draw(configs(data_file.name, sound in ("config", "both")))
        (folder / "config.yaml").write_text(text, encoding="utf-8")
        note(f"{case.name} ({len(data_file.read_bytes())} bytes):\n{case}\nconfig.yaml:\n{text}overrides: {overrides}")
        before = snapshot(folder)
        with inside(folder):
            code, out, err = dry_run(["--config", "config.yaml", *overrides])
        assert snapshot(folder) == before, "a dry run wrote or changed a file"
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if code == 0:
        event("the dry run works")
        assert not errors and "Dry run: nothing was trained or written." in out
        shown = [line.split("query:  ", 1)[1] for line in out.splitlines() if line.startswith("    query:  ")]
        written = {shorten(text) for text in case.strings}
        if "dataset_name: pairs" in text:
            assert set(shown) <= written, "the dry run shows a query the file does not hold"
    else:
        event(f"error: {errors[0].split(':')[1][:20] if errors else '?'}")
        assert code == 2 and len(errors) == 1 and err.splitlines()[-1] == errors[0], err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "pairs.jsonl",
            gzip.compress(b'{"query": "q", "answer": "a"}\n'),
            "is gzip-compressed: name it pairs.jsonl.gz",
        ),
        ("pairs.jsonl", b'{"query": {"text": "q"}, "answer": "a"}\n', "row 1: column 'query' holds an object"),
        ("pairs.csv", b"query,answer\n", "pairs.csv has a header (query, answer) and no rows"),
    ],
    ids=["gzip named .jsonl", "an object as query", "a header and no rows"],
)
def test_the_command_prints_one_error_line_for_a_bad_file(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)
    result = run_script("train_embed.py", "--dry-run", f"dataset_name={tmp_path / name}", "test_size=1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and expected in result.stderr


def test_the_command_prints_one_error_line_for_a_key_given_twice(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("num_epochs: 1\nseed: 3\nnum_epochs: 2\n", encoding="utf-8")
    result = run_script("train_embed.py", "--dry-run", "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: config file {config}: 'num_epochs' is given twice, at line 1 and line 3: keep one of them\n"
    )


def test_an_error_that_holds_a_line_break_is_printed_on_one_line(capsys):
    def main(argv: list[str] | None) -> int:
        raise DataError("column 'a\nb' not found")

    with pytest.raises(SystemExit) as exit:
        common.run(main)
    assert exit.value.code == 2 and capsys.readouterr().err == "error: column 'a\\nb' not found\n"
