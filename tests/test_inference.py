"""Inference: the top-k answers of a corpus for each query, with the document embeddings a run kept."""

from __future__ import annotations

import pytest

from embedft.config.schema import RunConfig
from embedft.errors import DataError
from embedft.inference import corpus_cache, read_texts, retrieve, search
from embedft.run.files import RunFiles
from tests.conftest import MINILM, word_model


def test_the_best_documents_come_first_with_their_scores():
    model = word_model({"q": [1.0, 0.0], "near": [0.9, 0.1], "far": [0.0, 1.0]})
    (hits,) = search(model, ["q"], ["far", "near"], top_k=5)
    assert [hit.text for hit in hits] == ["near", "far"]  # top_k is capped at the corpus size
    assert hits[0].score > hits[1].score


def test_queries_come_from_arguments_a_file_and_stdin_blank_lines_dropped(tmp_path):
    file = tmp_path / "queries.txt"
    file.write_text("from the file\n\n", encoding="utf-8")
    assert read_texts(["argument "], str(file), "from stdin\n \n") == ["argument", "from the file", "from stdin"]
    with pytest.raises(DataError, match="cannot read queries"):
        read_texts([], str(tmp_path / "missing.txt"), None)


def test_a_runs_model_reads_the_runs_own_embeddings_else_the_shared_cache(tmp_path):
    run_cache = corpus_cache(tmp_path, RunConfig(cache_dir=str(tmp_path / "cache")))
    assert run_cache.root == RunFiles(tmp_path).embeddings
    shared = corpus_cache(None, RunConfig(cache_dir=str(tmp_path / "cache")))
    assert shared.root == tmp_path / "cache" / "embedft" / "embeddings"
    assert corpus_cache(None, RunConfig(embedding_cache=False)) is None


def test_a_corpus_file_is_searched_and_an_empty_one_is_one_line(tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("A building permit is decided within 10 weeks.\nBring your ID.\n", encoding="utf-8")
    config = RunConfig(embedding_cache=False)
    (hits,) = retrieve(config, MINILM, None, ["How long does a building permit take?"], str(corpus), top_k=1)
    assert hits[0].text.startswith("A building permit")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="is empty"):
        retrieve(config, MINILM, None, ["q"], str(tmp_path / "empty.txt"), top_k=1)
