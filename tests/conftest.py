"""Shared fixtures. Every test runs offline, on the packaged MiniLM and packaged or generated data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[variable] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MINILM = "packaged:all-MiniLM-L6-v2"


def run_script(script: str, *args: str, stdin: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of scripts/*.py as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def lay_out_like_hub_cache(cache_dir: Path, repo_id: str, source: Path) -> Path:
    """Link ``source``'s files into ``cache_dir`` the way huggingface_hub leaves a downloaded model:
    ``models--org--name/{refs/main, snapshots/<commit>/<files>}``; return the snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for file in source.rglob("*"):
        if file.is_file():
            target = snapshot / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file)
    return snapshot


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def module_tmp_path(request, tmp_path_factory) -> Iterator[Path]:
    """A folder shared by one module's tests and deleted when the module ends, so that saved models and
    checkpoints do not pile up on a small CI disk (function tmp_paths go by the retention policy in pyproject)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 on the CPU, loaded once."""
    from embedft.models import load_model

    return load_model(MINILM, "cpu")


@pytest.fixture(scope="session")
def faq_pairs():
    """The packaged construction FAQ as a cleaned Dataset with query/answer columns."""
    from embedft.data import clean_pairs, load_pairs

    pairs, _ = clean_pairs(load_pairs("packaged:construction-faq"))
    return pairs


@pytest.fixture(scope="session")
def small_splits(faq_pairs):
    """60 FAQ pairs split 48/12, seeded."""
    from embedft.data import sample_pairs, split_pairs

    return split_pairs(sample_pairs(faq_pairs, 60, seed=3), 12, seed=3)
