"""Atomic writes: a reader never sees half a file, and a failed write leaves the earlier file as it was."""

from __future__ import annotations

import json

import pytest

from embedft.errors import OutputError
from embedft.io import atomic_path, embedft_cache_folder, read_json, write_json, write_text


def test_a_write_replaces_the_file_only_when_it_is_complete(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("{half", encoding="utf-8")
        raise RuntimeError("killed while writing")
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_temporary_file_left_by_a_killed_write_is_replaced(tmp_path):
    (tmp_path / ".report.md.partial").write_text("stale", encoding="utf-8")
    write_text(tmp_path / "report.md", "ü\n")
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == "ü\n"
    assert not (tmp_path / ".report.md.partial").exists()


def test_json_keeps_non_ascii_text_and_a_damaged_file_is_one_line(tmp_path):
    write_json(tmp_path / "x.json", {"q": "Bygglov för ändring"})
    assert "för" in (tmp_path / "x.json").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == {"q": "Bygglov för ändring"}
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(OutputError, match="cannot read"):
        read_json(tmp_path / "bad.json")


def test_derived_files_live_under_cache_dir_else_the_user_cache(tmp_path, monkeypatch):
    assert embedft_cache_folder(str(tmp_path), "static") == tmp_path / "embedft" / "static"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedft_cache_folder(None, "embeddings") == tmp_path / "xdg" / "embedft" / "embeddings"
