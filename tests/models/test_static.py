"""Static mining models: distilled once from the packaged MiniLM, cached, loaded, ranking and mining offline."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

import embedft.models.static
from embedft.config.schema import MiningConfig
from embedft.errors import ModelError
from embedft.mining.training_set import mine_training_triplets
from embedft.models.loading import load_model, resolve_model_source
from embedft.models.sources import packaged_model_path
from embedft.models.static import METADATA_FILE, cache_folder_name, distil_static_model, publish, static_cache_root
from tests.conftest import lay_out_like_hub_cache, word_model

STATIC_MINILM = "static:packaged:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def static_cache(module_tmp_path):
    """A cache folder holding the static model distilled from the packaged MiniLM (the real, full build, once)."""
    return str(module_tmp_path / "static-cache")


@pytest.fixture(scope="module")
def static_minilm(static_cache):
    """``static:packaged:all-MiniLM-L6-v2`` built end to end through load_model."""
    return load_model(STATIC_MINILM, "cpu", cache_dir=static_cache)


@pytest.fixture(scope="module")
def static_path(static_minilm, static_cache):
    path, local_only = resolve_model_source(STATIC_MINILM, static_cache)
    assert local_only
    return Path(path)


def test_static_model_is_distilled_into_the_cache_and_loads_by_path(static_minilm, static_path, static_cache):
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    assert static_path.parent == Path(static_cache) / "embedft" / "static"
    assert static_path.name.startswith("all-MiniLM-L6-v2-256d-")
    assert [type(module) for module in static_minilm] == [StaticEmbedding, Normalize]
    assert static_minilm.get_embedding_dimension() == 256
    reloaded = SentenceTransformer(str(static_path), device="cpu")
    embeddings = reloaded.encode(["a building permit", "chocolate cake recipe"])
    assert embeddings.shape == (2, 256)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    metadata = json.loads((static_path / METADATA_FILE).read_text())
    assert metadata["source"] == "packaged:all-MiniLM-L6-v2" and metadata["dimensions"] == 256
    # Nothing of the atomic save is left behind.
    assert [p.name for p in static_path.parent.iterdir()] == [static_path.name]


def test_second_resolve_uses_the_cache_without_distilling(static_path, static_cache, monkeypatch, caplog):
    def distil_again(*args, **kwargs):
        raise AssertionError("the cached static model was distilled again")

    monkeypatch.setattr(embedft.models.static, "distil_static_model", distil_again)
    modified = static_path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="embedft.models.static"):
        assert resolve_model_source(STATIC_MINILM, static_cache, "mining_model_name") == (str(static_path), True)
    assert "Using the cached static model" in caplog.text and "Distilling" not in caplog.text
    assert static_path.stat().st_mtime_ns == modified


def test_related_text_ranks_above_unrelated(static_minilm):
    query, related, unrelated = static_minilm.encode(
        ["building permit application", "how do I apply for a building permit", "chocolate cake recipe"]
    )
    assert query @ related > query @ unrelated + 0.2


def test_special_and_unused_tokens_are_zero_and_wordpieces_are_kept(static_minilm):
    static = static_minilm[0]
    weights = static.embedding.weight.detach().numpy()

    def norm(token: str) -> float:
        return float(np.linalg.norm(weights[static.tokenizer.token_to_id(token)]))

    assert all(norm(token) == 0 for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[unused0]", "[unused99]"))
    assert all(norm(token) > 0 for token in ("permit", "##ing", "##s", "the", "!"))


def test_static_model_mines_hard_negatives_offline(small_splits, static_minilm):
    train = small_splits["train"]
    triplets = mine_training_triplets(train, static_minilm, MiningConfig(num_negatives=1, margin=None), seed=1)
    assert len(triplets) == len(train)
    positives: dict[str, set[str]] = {}
    for query, answer in zip(train["query"], train["answer"]):
        positives.setdefault(query, set()).add(answer)
    for query, negative in zip(triplets["query"], triplets["negative"]):
        assert negative not in positives[query]
        assert negative in set(train["answer"])


def test_a_static_model_loads_by_hub_name_from_a_cache_laid_out_like_the_hub(static_path, tmp_path):
    # sentence-transformers/static-retrieval-mrl-en-v1 is the same kind of repo: modules.json, no config.json.
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    name = "sentence-transformers/static-retrieval-mrl-en-v1"
    lay_out_like_hub_cache(tmp_path, name, static_path)
    assert resolve_model_source(name, str(tmp_path)) == (name, True)
    model = load_model(name, "cpu", cache_dir=str(tmp_path))
    assert isinstance(model[0], StaticEmbedding) and model.get_embedding_dimension() == 256


def test_static_of_a_hub_name_not_cached_fails_fast_offline(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelError, match="'sentence-transformers/all-MiniLM-L6-v2' is not in .* needs a network"):
        resolve_model_source("static:sentence-transformers/all-MiniLM-L6-v2", str(tmp_path), "mining_model_name")
    assert time.perf_counter() - started < 20
    assert not (tmp_path / "embedft").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("static:", "names no model after 'static:'"),
        ("static:static:packaged:all-MiniLM-L6-v2", "from a static model"),
        ("static:./no/such/model", "'./no/such/model' does not exist"),
    ],
)
def test_bad_static_names_are_one_line_errors(name, message, tmp_path):
    with pytest.raises(ModelError, match=message):
        resolve_model_source(name, str(tmp_path))


def test_a_static_model_is_not_distilled_again(tmp_path):
    word_model({"permit": [1.0, 0.0]}).save(str(tmp_path / "already-static"))
    with pytest.raises(ModelError, match="already is a static model: name it without 'static:'"):
        resolve_model_source(f"static:{tmp_path / 'already-static'}", str(tmp_path))


def test_cache_lives_under_cache_dir_else_the_user_cache(tmp_path, monkeypatch):
    assert static_cache_root(str(tmp_path)) == tmp_path / "embedft" / "static"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert static_cache_root(None) == tmp_path / "xdg" / "embedft" / "static"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert static_cache_root(None) == Path("~/.cache/embedft/static").expanduser()


def test_cache_key_follows_the_source_files_and_the_dimensions(tmp_path):
    source = tmp_path / "my-model"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"1234")
    first = cache_folder_name(str(source), source, 256)
    assert first == cache_folder_name(str(source), source, 256)
    assert first.startswith("my-model-256d-")
    assert cache_folder_name(str(source), source, 128) != first
    (source / "model.safetensors").write_bytes(b"retrained in place")
    assert cache_folder_name(str(source), source, 256) != first


def test_a_model_published_meanwhile_by_another_process_is_kept(tmp_path):
    destination = tmp_path / "static" / "model"
    publish(word_model({"permit": [1.0, 0.0]}), destination, {"by": "first"})
    assert publish(word_model({"permit": [0.0, 1.0]}), destination, {"by": "second"}) == destination
    assert json.loads((destination / METADATA_FILE).read_text()) == {"by": "first"}
    assert [p.name for p in destination.parent.iterdir()] == ["model"]


def test_dimensions_are_capped_at_the_source_and_max_vocabulary_limits_the_build(tmp_path):
    from sentence_transformers.sentence_transformer import SentenceTransformer

    source = packaged_model_path("packaged:all-MiniLM-L6-v2")
    path = distil_static_model(source, tmp_path / "small", dimensions=1000, max_vocabulary=500)
    model = SentenceTransformer(str(path), device="cpu")
    weights = model[0].embedding.weight.detach().numpy()
    assert weights.shape == (30522, 384)
    assert int((np.abs(weights).sum(axis=1) > 0).sum()) == 500


def test_a_static_miner_loads_with_max_seq_length_set(static_path):
    # max_seq_length is the main model's window; a static model has none and must load all the same.
    model = load_model(str(static_path), "cpu", None, False, 128, "mining_model_name", True)
    assert model.encode_document(["a permit"]).shape[1] > 0
