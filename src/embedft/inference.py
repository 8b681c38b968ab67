"""Retrieval with a (fine-tuned) model: the top-k answers from a corpus for each query."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedft.config.schema import RunConfig
from embedft.data.prepared import retrieval_pool
from embedft.data.sources import load_corpus_file
from embedft.errors import DataError
from embedft.models.devices import encoding, resolve_device
from embedft.models.embedding_cache import EmbeddingCache, embedding_cache_root
from embedft.models.loading import load_configured_model
from embedft.run.files import RunFiles

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class Hit:
    """One retrieved document and its similarity to the query."""

    score: float
    text: str


def search(
    model: SentenceTransformer,
    queries: list[str],
    corpus: list[str],
    top_k: int = 5,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
) -> list[list[Hit]]:
    """Rank ``corpus`` for every query and return the ``top_k`` best, best first.

    Queries go through ``encode_query`` and documents through ``encode_document``, so models with query and
    document prompts (such as embeddinggemma) get them. With ``cache`` the documents' embeddings are read from it
    (a run folder keeps its final model's pool embeddings), and only documents not in it are encoded and added.
    """
    import torch
    from sentence_transformers.util import semantic_search

    corpus_embeddings = torch.from_numpy(encode_corpus(model, corpus, batch_size, cache)).to(model.device)
    started = time.perf_counter()
    query_embeddings = model.encode_query(queries, batch_size=batch_size, convert_to_tensor=True)
    results = semantic_search(
        query_embeddings, corpus_embeddings, top_k=min(top_k, len(corpus)), score_function=model.similarity
    )
    logger.info(
        "Encoded %d queries and ranked %d documents in %.1f ms",
        len(queries),
        len(corpus),
        1000 * (time.perf_counter() - started),
    )
    return [[Hit(score=float(hit["score"]), text=corpus[hit["corpus_id"]]) for hit in hits] for hits in results]


def encode_corpus(
    model: SentenceTransformer, corpus: list[str], batch_size: int, cache: EmbeddingCache | None
) -> np.ndarray:
    """The documents' embeddings (``encode_document``): read from ``cache`` when given, and only the documents not
    in it encoded and added; without a cache, all encoded."""
    if cache is not None:
        return cache.embeddings(model, corpus, "document", batch_size, "Encoding the corpus")
    return model.encode_document(corpus, batch_size=batch_size)


def read_texts(arguments: list[str], file: str | None, stdin_text: str | None) -> list[str]:
    """Queries from command-line arguments, a file (one per line) or standard input, blank lines dropped."""
    texts = list(arguments)
    if file is not None:
        try:
            with open(file, encoding="utf-8") as handle:
                texts.extend(handle.read().splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read queries from {file}: {getattr(exc, 'strerror', None) or exc}") from None
    if stdin_text is not None:
        texts.extend(stdin_text.splitlines())
    return [text.strip() for text in texts if text.strip()]


def corpus_cache(run_dir: Path | None, config: RunConfig) -> EmbeddingCache | None:
    """Where inference keeps document embeddings: a run's own folder (``embeddings/``, filled by its final
    evaluation) for a run's model, else the shared embedding cache (None when ``embedding_cache`` is off)."""
    if run_dir is not None:
        return EmbeddingCache(RunFiles(run_dir).embeddings)
    if config.embedding_cache:
        return EmbeddingCache(embedding_cache_root(config.cache_dir))
    return None


def load_corpus(config: RunConfig, corpus_file: str | None) -> list[str]:
    """The documents to search: ``corpus_file`` (a ``.jsonl`` with ``text`` rows, or a text file with one document a
    line), else the run's retrieval pool (every answer of the configured data, plus its corpus_file).

    Raises:
        DataError: the corpus file cannot be read or is empty.
    """
    if corpus_file is None:
        return retrieval_pool(config)
    if corpus_file.lower().endswith(".jsonl"):
        return load_corpus_file(corpus_file, key="--corpus")
    corpus = read_texts([], corpus_file, None)
    if not corpus:
        raise DataError(f"the corpus {corpus_file} is empty: give a file with one document per line")
    return corpus


def retrieve(
    config: RunConfig, model_path: str, run_dir: Path | None, queries: list[str], corpus_file: str | None, top_k: int
) -> list[list[Hit]]:
    """``make infer-embed``: the ``top_k`` best documents for each query, with the model at ``model_path``.

    The corpus is ``corpus_file`` (a ``.jsonl`` with ``text`` rows, or a text file with one document a line), else
    the run's retrieval pool (every answer of the configured data, plus its corpus_file).

    Raises:
        DataError: the corpus file cannot be read or is empty.
    """
    corpus = load_corpus(config, corpus_file)
    device = resolve_device(config.device, for_training=False)
    model = load_configured_model(config, model_path, device, "MODEL")
    cache = corpus_cache(run_dir, config)
    with encoding(config.evaluation.precision, model):  # as the final evaluation encoded the run's pool
        return search(model, queries, corpus, top_k=top_k, batch_size=config.evaluation.batch_size, cache=cache)
