"""Reading data files: compressed ones, a file whose bytes say something other than its name, CSV and TSV dialects,
and files with nothing to read, each problem in one line that names the file."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
import lzma
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from datasets import Dataset

from embedft.config.parsing import load_config
from embedft.config.schema import RunConfig
from embedft.data.prepared import prepare_data
from embedft.data.sources import load_pairs, load_rows
from embedft.errors import ConfigError, DataError
from tests.conftest import ROOT

ROWS = [{"query": f"q{i}", "answer": f"a{i}"} for i in range(4)]
JSONL = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
CSV = ("query,answer\n" + "".join(f"q{i},a{i}\n" for i in range(4))).encode()
COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
# The semicolon file: a ticket export whose texts hold commas.
TICKETS = (
    "ticket_id;user_question;kb_article\n1;How do I reset it, please?;Open Settings, then Reset\n2;Where is it?;Here\n"
)


def load_error(path: Path) -> str:
    """The one-line DataError that reading ``path`` as pairs raises."""
    with pytest.raises(DataError) as error:
        load_pairs(str(path))
    return str(error.value)


# Compressed files and folders of shards


@pytest.mark.parametrize(("name", "content"), [("pairs.jsonl", JSONL), ("pairs.csv", CSV)])
@pytest.mark.parametrize("ending", sorted(COMPRESS))
def test_compressed_text_files_are_read(tmp_path, name, content, ending):
    path = tmp_path / f"{name}{ending}"
    path.write_bytes(COMPRESS[ending](content))
    assert load_pairs(str(path))["query"] == ["q0", "q1", "q2", "q3"]


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard is installed")
def test_a_zst_file_without_zstandard_says_what_to_install(tmp_path):
    path = tmp_path / "pairs.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    with pytest.raises(DataError, match="needs the zstandard package: pip install zstandard"):
        load_pairs(str(path))


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is None, reason="zstandard is not installed")
def test_a_zst_file_is_read_where_zstandard_is_installed(tmp_path):
    import zstandard

    path = tmp_path / "pairs.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(JSONL))
    assert load_pairs(str(path))["query"] == ["q0", "q1", "q2", "q3"]


def test_a_folder_of_compressed_shards_is_one_data_set(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for shard in range(2):
        rows = ROWS[2 * shard : 2 * shard + 2]
        (folder / f"part-{shard:05d}.jsonl.gz").write_bytes(gzip.compress("".join(map(json.dumps, rows)).encode()))
    assert sorted(load_pairs(str(folder))["query"]) == ["q0", "q1", "q2", "q3"]


def test_a_misnamed_shard_in_a_folder_is_named(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "part-0.jsonl").write_bytes(JSONL)
    (folder / "part-1.jsonl").write_bytes(gzip.compress(JSONL))
    with pytest.raises(DataError, match="part-1.jsonl is gzip-compressed: name it part-1.jsonl.gz"):
        load_pairs(str(folder))


def test_long_json_lines_whose_column_changes_type_do_not_crash_the_reader(tmp_path):
    """pyarrow 26 crashes the process (SIGSEGV) on a batch of JSON lines parsed in several blocks when a column
    changes type between blocks; the file is read as one block, so the rows reach the type check. Run in a child
    process, three times over (the crash is not certain each time), so that a crash fails this test alone."""
    long = "x" * 100_000
    rows = [{"split": long[:50_000], "neg": long}, {"neg": long}, {"answer": long, "neg": True}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    script = (
        "import sys, datasets\n"
        "from pathlib import Path\n"
        "from embedft.data.readers import load_data_file, quiet_datasets\n"
        "for attempt in range(3):\n"
        "    datasets.config.HF_DATASETS_CACHE = Path(sys.argv[2]) / str(attempt)\n"
        "    with quiet_datasets():\n"
        "        assert len(load_data_file(Path(sys.argv[1]))) == 3\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "cache")], cwd=ROOT, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


# What the first bytes say


def test_a_gzip_file_under_a_plain_name_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(gzip.compress(JSONL))
    assert load_error(path) == f"{path} is gzip-compressed: name it pairs.jsonl.gz"


def test_a_parquet_file_under_a_text_name_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "pairs.csv"
    Dataset.from_list(ROWS).to_parquet(str(path))
    with pytest.raises(DataError, match="pairs.csv is a Parquet file: name it pairs.parquet"):
        load_pairs(str(path))


def test_a_zip_archive_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pairs.jsonl", JSONL)
    with pytest.raises(DataError, match="pairs.jsonl is a zip archive: unzip it"):
        load_pairs(str(path))


def test_a_plain_file_under_a_compressed_name_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(JSONL)
    with pytest.raises(DataError, match="pairs.jsonl.gz is not gzip-compressed: name it pairs.jsonl$"):
        load_pairs(str(path))


def test_a_text_file_under_a_parquet_name_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(JSONL)
    with pytest.raises(DataError, match="is not a Parquet file .*: name it pairs.jsonl or pairs.csv by what it holds"):
        load_pairs(str(path))


def test_a_compressed_file_under_a_parquet_name_is_named_for_what_it_may_hold(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(bz2.compress(JSONL))
    assert load_error(path) == (
        f"{path} is bzip2-compressed, not Parquet: name it pairs.jsonl.bz2 or pairs.csv.bz2 by what it holds"
    )


def test_a_cut_parquet_file_is_called_damaged(tmp_path):
    path = tmp_path / "pairs.parquet"
    Dataset.from_list(ROWS).to_parquet(str(path))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="pairs.parquet is a Parquet file cut short or damaged .*: write it again"):
        load_pairs(str(path))


def test_a_cut_compressed_file_is_called_damaged_not_misencoded(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(gzip.compress(JSONL)[:-12])
    with pytest.raises(DataError, match="pairs.jsonl.gz is damaged or cut short"):
        load_pairs(str(path))


def test_utf16_text_is_named(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(CSV.decode().encode("utf-16"))
    with pytest.raises(DataError, match="pairs.csv is UTF-16 text: save it as UTF-8"):
        load_pairs(str(path))


# CSV and TSV dialects


@pytest.mark.parametrize("texts_with_commas", [True, False])
def test_a_semicolon_csv_is_read_by_its_delimiter(tmp_path, texts_with_commas):
    text = TICKETS if texts_with_commas else TICKETS.replace(",", "")
    path = tmp_path / "tickets.csv"
    path.write_text(text, encoding="utf-8")
    pairs = load_pairs(str(path), "user_question", "kb_article")
    assert pairs["answer"][0] == ("Open Settings, then Reset" if texts_with_commas else "Open Settings then Reset")


def test_a_tsv_file_is_read_with_tabs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("query\tanswer\nWhere, exactly?\tHere; there\n", encoding="utf-8")
    assert load_pairs(str(path))[0] == {"query": "Where, exactly?", "answer": "Here; there"}


def test_csv_delimiter_overrides_the_guess_and_a_wrong_one_gets_a_hint(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text(TICKETS.replace(",", ""), encoding="utf-8")
    assert load_rows(str(path), csv_delimiter=";").column_names == ["ticket_id", "user_question", "kb_article"]
    config = RunConfig(
        dataset_name=str(path), query_column="user_question", answer_column="kb_article", csv_delimiter=","
    )
    with pytest.raises(DataError, match="looks separated by ';': set csv_delimiter: ';'"):
        prepare_data(config)


@pytest.mark.parametrize("value", ["ab", "", '"', "\n"])
def test_csv_delimiter_must_be_one_plain_character(value):
    with pytest.raises(ConfigError, match="'csv_delimiter' must be one character"):
        load_config(None, [f"csv_delimiter={json.dumps(value)}"])


def test_every_csv_cell_is_read_as_the_text_it_is(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,answer\n007,1.50\nNA,true\n", encoding="utf-8")
    assert load_pairs(str(path)).to_list() == [{"query": "007", "answer": "1.50"}, {"query": "NA", "answer": "true"}]


def test_a_csv_row_with_more_cells_than_the_header_names_its_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,answer\nq1,a1\nq2,Yes, it does\n", encoding="utf-8")
    assert load_error(path) == (
        f"{path} line 3 has 3 cells separated by ',', the header 2: put each text that holds ',', a quote or a line "
        "break in double quotes, or set csv_delimiter"
    )


def test_a_bad_csv_row_far_down_the_file_names_its_line(tmp_path, capfd):
    path = tmp_path / "pairs.csv"
    rows = "".join(f"question number {i},answer number {i}\n" for i in range(5000))
    path.write_text(f"query,answer\n{rows}q,Yes, it does\n", encoding="utf-8")
    with pytest.raises(DataError, match="pairs.csv line 5002 has 3 cells separated by ','"):
        load_pairs(str(path))
    assert capfd.readouterr().err == ""  # the reader's own error line and blank line stay quiet


def test_an_unclosed_quote_names_its_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('query,answer\nq1,a1\nq2,"a2\nq3,a3\n', encoding="utf-8")
    with pytest.raises(DataError, match="pairs.csv line 3: a quoted text starts there and never ends"):
        load_pairs(str(path))


# Files with nothing to read


def test_a_csv_with_a_header_and_no_rows_says_so(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,answer\n", encoding="utf-8")
    assert load_error(path) == (
        f"{path} has a header (query, answer) and no rows: add one row a pair below the header"
    )


@pytest.mark.parametrize(("name", "text"), [("pairs.json", "[]"), ("pairs.jsonl", "\n\n"), ("pairs.parquet", None)])
def test_a_file_without_rows_says_so(tmp_path, name, text):
    path = tmp_path / name
    if text is None:
        Dataset.from_list(ROWS).select([]).to_parquet(str(path))
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=f"{name} holds no rows: it must hold \\(query, answer\\) pairs"):
        load_pairs(str(path))


def test_a_compressed_file_that_holds_nothing_but_white_space_says_so(tmp_path):
    path = tmp_path / "pairs.jsonl.xz"
    path.write_bytes(lzma.compress(b"\xef\xbb\xbf \n"))
    assert load_error(path) == f"{path} holds no rows: it must hold (query, answer) pairs"


def test_a_number_too_large_for_arrow_names_its_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [
        '{"query": "q1", "answer": "a1"}',
        '{"query": 560, "answer": "a2"}',
        '{"answer": [144229483315689822095409152]}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (
        load_error(path)
        == f"{path} line 3 holds the number 144229483315689822095409, larger than 64 bits: write it as text"
    )


def test_a_file_with_no_pair_left_after_cleaning_names_the_file_and_why(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,answer\n ,a\nq,\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        prepare_data(RunConfig(dataset_name=str(path), test_size=1))
    assert str(error.value).startswith(f"{path} is empty after cleaning (2 rows: 2 with an empty query or answer, ")


def test_a_broken_json_file_names_the_line_and_column(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('[{"query": "q", "answer": "a"},\n {"query": ]', encoding="utf-8")
    with pytest.raises(DataError, match="pairs.json is not valid JSON at line 2, column 12"):
        load_pairs(str(path))
