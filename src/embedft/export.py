"""A run's final model's embeddings of its pool as a faiss index and a documents file, for serving without embedft
(``make export-index``): plain faiss and sentence-transformers query it (README, "Using the model")."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from embedft.config.schema import RunConfig
from embedft.errors import OutputError
from embedft.inference import corpus_cache, encode_corpus, load_corpus
from embedft.io import atomic_path, write_json
from embedft.models.devices import encoding, resolve_device
from embedft.models.loading import load_configured_model

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
DOCUMENTS_FILE = "documents.jsonl"  # row i of the index is line i: {"id", "text"}
ABOUT_FILE = "index.json"  # the model, the similarity and the size, to query the index as it was built


def export_index(
    config: RunConfig, model_path: str, run_dir: Path | None, corpus_file: str | None, output: Path
) -> int:
    """Encode the corpus (the run's pool unless ``corpus_file``) with the model and write ``output/index.faiss``
    (an exact inner-product index: on unit vectors, the model's cosine), ``documents.jsonl`` and ``index.json``.
    A run's final model reads the pool's embeddings its final evaluation kept (``embeddings/``).

    Returns:
        The number of documents indexed.

    Raises:
        OutputError: ``output`` already exists (an index is never overwritten).
        DataError: the corpus file cannot be read or is empty.
    """
    import faiss

    if output.exists():
        raise OutputError(f"{output} already exists and is never overwritten: remove it or give another --output")
    corpus = load_corpus(config, corpus_file)
    model = load_configured_model(config, model_path, resolve_device(config.device, for_training=False), "MODEL")
    cache = corpus_cache(run_dir, config)
    with encoding(config.evaluation.precision, model):  # as the final evaluation encoded the run's pool
        vectors = encode_corpus(model, corpus, config.evaluation.batch_size, cache)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    cosine = model.similarity_fn_name in (None, "cosine")
    if cosine:
        faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    output.mkdir(parents=True)
    with atomic_path(output / INDEX_FILE) as temporary:
        faiss.write_index(index, str(temporary))
    with atomic_path(output / DOCUMENTS_FILE) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for row, text in enumerate(corpus):
            handle.write(json.dumps({"id": str(row), "text": text}, ensure_ascii=False) + "\n")
    about = {
        "model": model_path,
        "documents": len(corpus),
        "dimension": int(vectors.shape[1]),
        "similarity": "cosine (unit vectors, inner product)" if cosine else str(model.similarity_fn_name),
        "normalize_queries": cosine,
    }
    write_json(output / ABOUT_FILE, about)
    logger.info("Indexed %d documents (%d dimensions) in %s", len(corpus), vectors.shape[1], output)
    return len(corpus)
