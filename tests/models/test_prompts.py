"""Custom query/document prompts (query_prompt, document_prompt): set on every model that stands for model_name, so
mining, training, evaluation and inference apply them alike, and saved with the model."""

from __future__ import annotations

import numpy as np
import pytest

from embedft.config.parsing import load_config
from embedft.errors import ConfigError
from embedft.models.embedding_cache import EmbeddingCache
from embedft.models.loading import load_configured_model
from embedft.models.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT_NAMES, encode_prompt, training_prompts
from tests.conftest import prompt_word_model


@pytest.fixture(scope="module")
def word_model_dir(module_tmp_path):
    """A saved static word model with no prompts of its own, in which the prompt word 'query' moves embeddings."""
    folder = module_tmp_path / "word-model"
    prompt_word_model().save(str(folder))
    return str(folder)


def test_custom_prompts_are_what_encode_query_encode_document_and_training_apply(word_model_dir):
    config = load_config(None, [f"model_name={word_model_dir}", "query_prompt='query: '", "document_prompt=''"])
    model = load_configured_model(config, word_model_dir, "cpu", "model_name")
    assert encode_prompt(model, QUERY_PROMPT_NAMES) == "query: "
    assert encode_prompt(model, DOCUMENT_PROMPT_NAMES) == ""
    assert training_prompts(model) == {"query": "query: "}
    np.testing.assert_allclose(model.encode_query(["permit"]), model.encode(["query: permit"]), atol=1e-6)


def test_custom_query_prompt_changes_the_embeddings_mining_and_evaluation_read(word_model_dir, tmp_path):
    plain = load_configured_model(load_config(), word_model_dir, "cpu", "model_name")
    config = load_config(None, [f"model_name={word_model_dir}", "query_prompt='query: '"])
    prompted = load_configured_model(config, word_model_dir, "cpu", "model_name")
    cache = EmbeddingCache(tmp_path)  # mining and evaluation encode through the embedding cache
    before = cache.embeddings(plain, ["permit"], "query", 4, "Encoding")
    after = cache.embeddings(prompted, ["permit"], "query", 4, "Encoding")
    assert not np.allclose(before, after)  # a different cache entry, not the prompt-less one read back
    np.testing.assert_allclose(after, prompted.encode(["query: permit"]), atol=1e-6)


def test_a_different_mining_model_keeps_its_own_prompts(word_model_dir, tmp_path):
    config = load_config(None, ["query_prompt='query: '"])  # model_name is the packaged MiniLM
    miner = load_configured_model(config, word_model_dir, "cpu", "mining_model_name")
    assert encode_prompt(miner, QUERY_PROMPT_NAMES) == ""
    same = load_config(None, [f"model_name={word_model_dir}", "query_prompt='query: '"])
    assert encode_prompt(load_configured_model(same, word_model_dir, "cpu", "mining_model_name"), ["query"]) == (
        "query: "
    )


def test_custom_prompts_with_use_prompts_off_are_refused():
    with pytest.raises(ConfigError, match="use_prompts is false"):
        load_config(None, ["use_prompts=false", "query_prompt='query: '"])
