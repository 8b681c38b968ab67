"""The embedding cache: every text encoded once per model, side and prompt, read back across processes; a scratch
cache when none is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedft.config.schema import MiningConfig
from embedft.mining.training_set import mine_training_triplets
from embedft.models.embedding_cache import EmbeddingCache, EmbeddingStore, cache_or_scratch, configured_cache
from tests.conftest import rows


def test_a_second_mining_run_encodes_nothing(tmp_path, small_splits, minilm):
    train = small_splits["train"]
    first_cache = EmbeddingCache(tmp_path / "embeddings")
    first = mine_training_triplets(train, minilm, MiningConfig(), seed=1, cache=first_cache)
    encoded = {store.folder.name: store.encoded for store in first_cache._stores.values()}
    assert sum(encoded.values()) == len(set(train["query"])) + len(set(train["answer"]))
    again_cache = EmbeddingCache(tmp_path / "embeddings")  # a new process: only the files are shared
    calls = []
    original = minilm.encode

    def counting_encode(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    minilm.encode = counting_encode
    try:
        again = mine_training_triplets(train, minilm, MiningConfig(), seed=1, cache=again_cache)
    finally:
        minilm.encode = original
    assert calls == []
    assert rows(again) == rows(first)


def test_a_store_keeps_its_shards_and_reads_them_back_in_the_texts_order(tmp_path):
    store = EmbeddingStore(tmp_path / "store")
    keys = np.array([b"k1", b"k2"], dtype="S20")
    store.add(keys, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert not list((tmp_path / "store").glob(".*partial"))  # written atomically
    again = EmbeddingStore(tmp_path / "store")
    assert len(again) == 2
    assert again.locate(np.array([b"k2", b"k3"], dtype="S20")).tolist()[1] == -1


def test_without_a_cache_a_scratch_one_is_used_and_removed(tmp_path):
    kept = EmbeddingCache(tmp_path / "kept")
    with cache_or_scratch(kept) as cache:
        assert cache is kept
    with cache_or_scratch(None) as cache:
        scratch = Path(cache.root)
        assert scratch.is_dir()
    assert not scratch.exists()


def test_a_run_keeps_the_shared_cache_unless_embedding_cache_is_off(tmp_path):
    with configured_cache(True, str(tmp_path)) as cache:
        assert Path(cache.root) == tmp_path / "embedft" / "embeddings"
    with configured_cache(False, str(tmp_path)) as cache:
        scratch = Path(cache.root)
    assert not scratch.exists() and scratch.parent != tmp_path
