"""What the scale benchmark (scripts/bench_scale.py) reads off a finished run: stage times, memory, and how many
of the exact nearest candidates the approximate search finds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from embedft.config.parsing import load_config
from embedft.data.prepared import prepare_data
from embedft.mining.engine import candidate_width, derived_range_max
from embedft.mining.search import ExactSearch, build_search, normalize
from embedft.mining.task import MiningTask
from embedft.models.embedding_cache import EmbeddingCache, embedding_cache_root
from embedft.models.loading import load_configured_model
from embedft.run.files import RunFiles


def candidate_recall(run_dir: Path, sample_size: int) -> dict[str, Any]:
    """The share of the exact top candidates (as many as mining retrieves:
    :func:`~embedft.mining.engine.candidate_width`) that the approximate index (built as the run's mining builds it)
    also returns, over a seeded sample of training queries; plus both searches' speed.

    The embeddings come from the run's embedding cache, so nothing is encoded again.
    """
    config = load_config(RunFiles(run_dir).config)
    data = prepare_data(config)
    task = MiningTask.from_dataset(data.splits["train"], data.training_documents, data.corpus)
    model = load_configured_model(config, config.mining_model_name, "cpu", "mining_model_name")
    cache = EmbeddingCache(embedding_cache_root(config.cache_dir))
    documents = cache.store(model, "document")
    document_keys = documents.encode(model, task.corpus, "document", config.mining.batch_size, "Reading the pool")

    def document_vectors(start: int, end: int) -> np.ndarray:
        return normalize(documents.gather(task.corpus[start:end], document_keys[start:end]))

    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(len(task.queries), size=min(sample_size, len(task.queries)), replace=False)
    sample = [task.queries[i] for i in chosen]
    query_vectors = normalize(cache.embeddings(model, sample, "query", config.mining.batch_size, "Reading queries"))
    range_max = config.mining.range_max or derived_range_max(config.mining, task.max_positives)
    width = candidate_width(range_max, task.max_positives)

    exact = ExactSearch(document_vectors(0, len(task.corpus)))
    started = time.perf_counter()
    _, exact_indices = exact.search(query_vectors, width)
    exact_seconds = time.perf_counter() - started
    del exact
    approximate = build_search(len(task.corpus), document_vectors, 0, config.seed)
    started = time.perf_counter()
    _, approximate_indices = approximate.search(query_vectors, width)
    approximate_seconds = time.perf_counter() - started
    found = [
        len(set(e[e >= 0].tolist()) & set(a[a >= 0].tolist())) / max(int((e >= 0).sum()), 1)
        for e, a in zip(exact_indices, approximate_indices)
    ]
    found_10 = [
        len(set(e[:10].tolist()) & set(a[:10].tolist())) / 10 for e, a in zip(exact_indices, approximate_indices)
    ]
    limit = config.mining.exact_search_limit
    return {
        "search": "exact" if limit is None or len(task.corpus) <= limit else "approximate",
        "pool": len(task.corpus),
        "candidate_recall": round(float(np.mean(found)), 4),
        "candidate_recall_at_10": round(float(np.mean(found_10)), 4),
        "recall_queries": len(sample),
        "candidates_per_query": width,
        "exact_seconds_per_1000_queries": round(1000 * exact_seconds / len(sample), 2),
        "approximate_seconds_per_1000_queries": round(1000 * approximate_seconds / len(sample), 2),
    }


def scale_results(
    metrics: dict[str, Any], recall: dict[str, Any], wall_seconds: float, peak_rss_gib: float
) -> dict[str, Any]:
    """``results.json`` of the scale benchmark from a run's ``metrics.json`` and :func:`candidate_recall`."""
    timings = metrics["timings"]
    load_and_mine = timings["data_seconds"] + timings.get("models_seconds", 0.0) + timings["mining_seconds"]
    step_passes = [entry["eval_runtime"] for entry in metrics["history"] if "eval_runtime" in entry]
    return {
        "pairs": metrics["data"]["rows_loaded"],
        "load_and_mine_seconds": round(load_and_mine, 1),
        "bounded_eval_seconds": round(step_passes[0], 1) if step_passes else None,
        "seconds_to_first_step": round(timings.get("seconds_to_first_step", float("nan")), 1),
        "peak_rss_gib": round(timings.get("peak_rss_gib_at_first_step", float("nan")), 2),
        "peak_rss_gib_whole_run": round(peak_rss_gib, 2),
        "search": recall["search"],
        "candidate_recall": recall["candidate_recall"],
        "recall": recall,
        "stages": {
            key.removesuffix("_seconds"): round(value, 1) for key, value in timings.items() if "seconds" in key
        },
        "evaluation": metrics["evaluation"],
        "train_triplets": metrics["data"]["train_triplets"],
        "global_step": metrics["training"]["global_step"],
        "wall_seconds": round(wall_seconds, 1),
    }
