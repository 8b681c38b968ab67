"""make bench-throughput in its tiny mode: both paths train the same synthetic triplets and are timed."""

from __future__ import annotations

import json

from embedft.bench.throughput import build_model, synthetic_triplets
from tests.conftest import run_script


def test_the_tiny_benchmark_times_both_paths_and_writes_results(tmp_path):
    result = run_script(
        "bench_throughput.py", "--shape", "tiny", "--batch-size", "4", "--steps", "2", "--warmup", "1",
        "--device", "cpu", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"device", "shape", "batch_size", "precision", "plain", "project", "speedup"} <= set(results)
    for path in ("plain", "project"):
        measured = results[path]
        assert measured["steps"] == 2 and measured["samples_per_second"] > 0 and measured["peak_memory_gib"] > 0
        assert 50 < measured["tokens_per_step"] / 4 < 250  # about 150 real tokens a triplet
    assert results["speedup"] == results["project"]["tokens_per_second"] / results["plain"]["tokens_per_second"]
    assert "| plain |" in (tmp_path / "results.md").read_text()
    again = run_script("bench_throughput.py", "--shape", "tiny", "--output-dir", str(tmp_path))
    assert again.returncode == 2 and "already holds results.json" in again.stderr


def test_shapes_are_built_with_random_weights_and_triplets_have_mixed_lengths():
    model = build_model("tiny", "cpu", 128)
    assert model.get_embedding_dimension() == 32
    rows = synthetic_triplets(model.tokenizer, 50, 0, 128)
    lengths = [len(model.tokenizer(text)["input_ids"]) for text in rows["answer"]]
    assert max(lengths) <= 128 and min(lengths) < 40 < max(lengths)
    assert len(set(rows["query"])) == 50  # no duplicates for the no-duplicates sampler


def test_an_override_of_the_benchs_own_key_or_an_unknown_key_stops_before_any_timing(tmp_path):
    for override in ("batch_size=8", "training.no_such_key=1"):
        result = run_script(
            "bench_throughput.py", "--shape", "tiny", "--device", "cpu", "--output-dir", str(tmp_path), override
        )
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert not (tmp_path / "results.json").exists()
