"""Model resolution: packaged, local folder, hub cache, and fast clear failures offline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

import embedft.models.devices
from embedft.errors import ModelError
from embedft.models.devices import resolve_device, resolve_precision
from embedft.models.loading import load_model, resolve_model_source, warn_if_truncated
from embedft.models.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT_NAMES, encode_prompt, training_prompts
from embedft.models.sources import packaged_model_path
from tests.conftest import lay_out_like_hub_cache, prompt_word_model


def test_packaged_model_is_a_local_folder():
    path, local_only = resolve_model_source("packaged:all-MiniLM-L6-v2", None)
    assert local_only and (Path(path) / "modules.json").is_file()


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(ModelError, match="model_name './no/such/model' does not exist"):
        resolve_model_source("./no/such/model", None)


def test_hub_model_not_cached_fails_fast_offline(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelError, match="'google/embeddinggemma-300m' is not in .* needs a network connection"):
        load_model("google/embeddinggemma-300m", "cpu", cache_dir=str(tmp_path))
    assert time.perf_counter() - started < 20


def test_hub_model_loads_from_a_cache_laid_out_like_the_hub(tmp_path):
    source = Path(packaged_model_path("packaged:all-MiniLM-L6-v2"))
    snapshot = lay_out_like_hub_cache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", source)
    model = load_model("sentence-transformers/all-MiniLM-L6-v2", "cpu", cache_dir=str(tmp_path))
    assert model.get_embedding_dimension() == 384
    # Static embedding models have modules.json but no config.json: still found in the cache.
    (snapshot / "config.json").unlink()
    assert resolve_model_source("sentence-transformers/all-MiniLM-L6-v2", str(tmp_path)) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        True,
    )


def test_bf16_is_kept_on_a_cpu_with_bf16_instructions_only(caplog, monkeypatch):
    import embedft.models.devices

    monkeypatch.setattr(embedft.models.devices, "cpu_has_bf16", lambda: True)
    assert resolve_precision(fp16=False, bf16=True, device="cpu") == (False, True)
    monkeypatch.setattr(embedft.models.devices, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_precision(fp16=False, bf16=True, device="cpu") == (False, False)
    assert "this CPU has no bf16 instructions" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # fp16 would only be emulated on any CPU
        assert resolve_precision(fp16=True, bf16=False, device="cpu") == (False, False)
        assert resolve_precision(fp16=False, bf16=True, device="mps") == (False, False)
    assert "fp16 needs a CUDA GPU" in caplog.text and "bf16 needs a CUDA GPU" in caplog.text


def test_cpu_bf16_check_reads_torch_and_survives_a_torch_without_it(monkeypatch):
    import torch

    from embedft.models.devices import cpu_has_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not cpu_has_bf16()


def test_a_gpu_that_only_emulates_bf16_trains_in_fp32(caplog, monkeypatch):
    import torch

    asked = []

    def is_bf16_supported(including_emulation=True):  # a T4: bf16 tensors work, bf16 arithmetic does not
        asked.append(including_emulation)
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    with caplog.at_level(logging.WARNING):
        assert resolve_precision(fp16=False, bf16=True, device="cuda") == (False, False)
    assert asked == [False]
    assert "training.bf16=false training.fp16=true" in caplog.text
    assert resolve_precision(fp16=True, bf16=False, device="cuda") == (True, False)  # fp16 is kept as asked


def test_texts_longer_than_the_window_are_warned_once(minilm, caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_truncated(minilm, ["short answer", "word " * 400, "word " * 300]) == 2
    warnings = [r for r in caplog.records if "token window" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3 answers" in warnings[0].getMessage()


def test_many_texts_are_checked_on_a_sample_and_the_count_estimated(minilm, caplog):
    texts = [f"short answer {i}" if i % 4 else "word " * 300 for i in range(400)]
    with caplog.at_level(logging.WARNING):
        estimate = warn_if_truncated(minilm, texts, sample_size=100)
    assert 60 <= estimate <= 140  # 100 of 400 are long
    assert "of a sample of 100" in caplog.text


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


@pytest.mark.parametrize(
    ("prompts", "default", "query", "document"),
    [
        # e5 style: encode_document falls back to "passage" when there is no "document" key.
        ({"query": "query: ", "passage": "passage: "}, None, "query: ", "passage: "),
        ({"corpus": "passage: "}, None, "", "passage: "),
        # A "document" key wins even when empty: the library checks presence, not value.
        ({"query": "query: ", "document": "", "passage": "passage: "}, None, "query: ", ""),
        # With none of the names, both fall back to the default prompt.
        ({"search": "search: "}, "search", "search: ", "search: "),
    ],
)
def test_prompts_resolve_as_encode_query_and_encode_document_do(prompts, default, query, document):
    model = prompt_word_model()
    model.prompts = prompts
    model.default_prompt_name = default
    assert (encode_prompt(model, QUERY_PROMPT_NAMES), encode_prompt(model, DOCUMENT_PROMPT_NAMES)) == (query, document)
    # The library's own choice: encode_query/encode_document embed exactly as encode with the resolved prompt.
    assert np.allclose(model.encode_query(["permit"]), model.encode(["permit"], prompt=query))
    assert np.allclose(model.encode_document(["permit"]), model.encode(["permit"], prompt=document))
    columns = ["query", "answer", "negative_1", "negative_2"]
    expected = {"query": query, "answer": document, "negative_1": document, "negative_2": document}
    assert training_prompts(model, columns) == {column: p for column, p in expected.items() if p}


def test_saved_passage_prompt_reaches_documents_after_loading(tmp_path):
    model = prompt_word_model()
    model.prompts = {"query": "query: ", "passage": "passage: "}
    model.save(str(tmp_path / "e5"))
    reloaded = load_model(str(tmp_path / "e5"), "cpu")
    # Loading adds an empty "document" placeholder that would hide "passage" from encode_document: it is filled.
    assert reloaded.prompts["document"] == "passage: "
    assert np.allclose(reloaded.encode_document(["permit"]), reloaded.encode(["passage: permit"]))
    assert not np.allclose(reloaded.encode_document(["permit"]), reloaded.encode(["permit"]))
    assert training_prompts(reloaded) == {"query": "query: ", "answer": "passage: ", "negative": "passage: "}
    # The library's placeholder stays empty for models without a passage prompt; use_prompts=False drops all.
    plain = prompt_word_model()
    plain.save(str(tmp_path / "plain"))
    assert load_model(str(tmp_path / "plain"), "cpu").prompts == {"query": "", "document": ""}
    assert load_model(str(tmp_path / "e5"), "cpu", use_prompts=False).prompts == {}


def test_auto_encoding_precision_is_bf16_where_the_hardware_has_it(monkeypatch):
    from embedft.models.devices import encoding_precision

    monkeypatch.setattr(embedft.models.devices, "cpu_has_bf16", lambda: True)
    assert encoding_precision("auto", "cpu") == "bf16" and encoding_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(embedft.models.devices, "cpu_has_bf16", lambda: False)
    assert encoding_precision("auto", "cpu") == "fp32" and encoding_precision("bf16", "cpu") == "bf16"
    assert encoding_precision("auto", "mps") == "fp32"


def test_bf16_encoding_stays_within_rounding_of_fp32_and_is_cached_apart(minilm, tmp_path):
    from embedft.models.devices import encoding
    from embedft.models.embedding_cache import EmbeddingCache

    texts = ["How long is a building permit valid?", "A permit lapses after two years without work."]
    fp32 = minilm.encode_document(texts)
    cache = EmbeddingCache(tmp_path)
    fp32_store = cache.store(minilm, "document")
    with encoding("bf16", minilm) as precision:
        bf16 = minilm.encode_document(texts)
        bf16_store = cache.store(minilm, "document")
    assert precision == "bf16" and bf16.dtype == np.float32
    cosines = (fp32 * bf16).sum(axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosines.min() > 0.999 and not np.array_equal(fp32, bf16)
    assert bf16_store is not fp32_store  # embeddings of one precision are never read for the other
    assert np.array_equal(minilm.encode_document(texts), fp32)  # the block's end gives the model back as it was
    with encoding("fp32", minilm) as precision:
        assert precision == "fp32" and np.array_equal(minilm.encode_document(texts), fp32)
