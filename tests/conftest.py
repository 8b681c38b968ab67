"""Shared fixtures. Every test runs offline, on the packaged MiniLM and packaged or generated data."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from datasets import Dataset

for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[variable] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MINILM = "packaged:all-MiniLM-L6-v2"
# The vocabulary of tiny_word_model, prompt words included.
WORDS = ("query", "passage", ":", "permit", "fee", "roof", "deck")


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


def make_dry_run(*arguments: str) -> str:
    """What ``make -n ARGUMENTS`` would run, from the repository root. The variables of a make that runs the tests
    (``make test-latest`` passes VENV and LOCK) are not handed down, so the recipe is the one a user gets."""
    environment = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "-n", *arguments], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60, env=environment
    )
    return done.stdout


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
    from embedft.models.loading import load_model

    return load_model(MINILM, "cpu")


@pytest.fixture(scope="session")
def faq_pairs():
    """The packaged construction FAQ as a cleaned Dataset with query/answer columns."""
    from embedft.data.rows import clean_pairs
    from embedft.data.sources import load_pairs

    pairs, _ = clean_pairs(load_pairs("packaged:construction-faq"))
    return pairs


@pytest.fixture(scope="session")
def small_splits(faq_pairs):
    """60 FAQ pairs split 48/12, seeded."""
    from embedft.data.split import sample_pairs, split_pairs

    return split_pairs(sample_pairs(faq_pairs, 60, seed=3), 12, seed=3)


def word_model(vectors: dict[str, list[float]]):
    """A real SentenceTransformer whose one-word texts embed to the given vectors (a StaticEmbedding)."""
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(vectors)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    weights = np.array([[0.0] * len(next(iter(vectors.values())))] + list(vectors.values()), dtype=np.float32)
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")


def tiny_word_model(seed: int = 0):
    """A StaticEmbedding model over WORDS with random vectors: every word, prompt words included, moves it."""
    rng = np.random.default_rng(seed)
    return word_model({word: rng.normal(size=8).tolist() for word in WORDS})


def sample_metrics() -> dict:
    history = [
        {"step": 1, "epoch": 0.1, "loss": 1.2, "learning_rate": 1e-5},
        {"step": 5, "epoch": 0.5, "loss": 0.8, "eval_loss": 0.9, "ndcg@10": 0.6, "triplet_accuracy": 0.6},
        {"step": 10, "epoch": 1.0, "loss": 0.5, "eval_loss": 0.7, "ndcg@10": 0.7, "triplet_accuracy": 0.7},
    ]
    return {
        "baseline": {"triplet_accuracy": 0.5, "ndcg@10": 0.55},
        "final": {"triplet_accuracy": 0.7, "ndcg@10": 0.7},
        "history": history,
        "data": {"train_pairs": 10},
        "timings": {"total_seconds": 12.0},
    }


def prompt_word_model():
    """A StaticEmbedding model in which every prompt word moves the embedding, so a missing prompt shows."""
    return word_model(
        {
            "query": [1.0, 0.0, 0.0, 0.0],
            "passage": [0.0, 1.0, 0.0, 0.0],
            "search": [0.0, 0.0, 1.0, 0.0],
            ":": [0.3, 0.3, 0.3, 0.3],
            "permit": [0.0, 0.0, 0.0, 1.0],
        }
    )


def at(score: float, axis: int = 0) -> list[float]:
    """A unit vector whose cosine with the query vector on ``axis`` is ``score`` (the rest goes to the last axis)."""
    vector = [0.0, 0.0, 0.0, math.sqrt(1 - score**2)]
    vector[axis] = score
    return vector


def unit(on_qb: float, on_qa: float) -> list[float]:
    """A unit vector with these cosines to ``query(0)`` (qb) and ``query(1)`` (qa)."""
    return [on_qb, on_qa, 0.0, math.sqrt(1 - on_qb**2 - on_qa**2)]


def query_vector(axis: int) -> list[float]:
    return [1.0 if i == axis else 0.0 for i in range(4)]


def rows(triplets: Dataset) -> list[tuple[str, ...]]:
    """Each row's texts: (query, answer, negative), or (query, answer, negative_1, ..., negative_k)."""
    return list(zip(*(triplets[column] for column in triplets.column_names)))
