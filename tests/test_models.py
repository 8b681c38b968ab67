"""Model resolution: packaged, local folder, hub cache, and fast clear failures offline."""

from __future__ import annotations

import logging
import time

import pytest

from embedft.errors import ModelError
from embedft.models import (
    load_model,
    packaged_model_path,
    resolve_device,
    resolve_model_source,
    resolve_precision,
    warn_if_truncated,
)


def test_packaged_model_is_a_local_folder():
    path, local_only = resolve_model_source("packaged:all-MiniLM-L6-v2", None)
    assert local_only and path.endswith("model")


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(ModelError, match="model_name './no/such/model' does not exist"):
        resolve_model_source("./no/such/model", None)


def test_hub_model_not_cached_fails_fast_offline(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelError, match="'google/embeddinggemma-300m' is not in .* needs a network connection"):
        load_model("google/embeddinggemma-300m", "cpu", cache_dir=str(tmp_path))
    assert time.perf_counter() - started < 20


def test_hub_model_loads_from_a_cache_laid_out_like_the_hub(tmp_path):
    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/<files>}.
    commit = "8b3219a92973c328a8e22fadcfa821b5dc75636a"
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    source = __import__("pathlib").Path(packaged_model_path("packaged:all-MiniLM-L6-v2"))
    for file in source.rglob("*"):
        if file.is_file():
            target = snapshot / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file)
    model = load_model("sentence-transformers/all-MiniLM-L6-v2", "cpu", cache_dir=str(tmp_path))
    assert model.get_embedding_dimension() == 384
    # Static embedding models have modules.json but no config.json: still found in the cache.
    (snapshot / "config.json").unlink()
    assert resolve_model_source("sentence-transformers/all-MiniLM-L6-v2", str(tmp_path)) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        True,
    )


def test_mixed_precision_on_cpu_warns_and_uses_fp32(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_precision(fp16=False, bf16=True, device="cpu") == (False, False)
    assert "bf16 needs a CUDA GPU" in caplog.text


def test_texts_longer_than_the_window_are_warned_once(minilm, caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_truncated(minilm, ["short answer", "word " * 400, "word " * 300]) == 2
    warnings = [r for r in caplog.records if "token window" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3 answers" in warnings[0].getMessage()


def test_device_names_are_checked_against_the_machine(monkeypatch):
    import torch

    from embedft.errors import ConfigError

    assert resolve_device("cpu") == "cpu"
    for bad in ("gpu", "meta"):
        with pytest.raises(ConfigError, match=f"'device' is '{bad}', not a device"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:0") == "cuda:0"
    assert resolve_device("cuda:1", "mining.device", for_training=False) == "cuda:1"
    with pytest.raises(ConfigError, match="run with CUDA_VISIBLE_DEVICES=1 and device: cuda"):
        resolve_device("cuda:1")
    with pytest.raises(ModelError, match="only 2 GPU"):
        resolve_device("cuda:2", for_training=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
