"""The scale benchmark end to end, in a tiny mode: synthetic pairs, a forced approximate search, a few steps."""

from __future__ import annotations

import json

from tests.conftest import run_script


def test_scale_benchmark_runs_in_a_tiny_mode_and_writes_its_results(tmp_path):
    out = tmp_path / "bench"
    result = run_script(
        "bench_scale.py",
        "--pairs",
        "300",
        "--output-dir",
        str(out),
        "--recall-queries",
        "50",
        "test_size=20",
        "training.max_steps=2",
        "training.eval_steps=1",
        "evaluation.max_pool=60",
        "evaluation.max_queries=10",
        "mining.exact_search_limit=0",  # force the approximate search on this small pool
        "batch_size=8",
        "mining_model_name=packaged:all-MiniLM-L6-v2",  # the static miner's distillation is tested in test_static
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["pairs"] == 300
    assert results["search"] == "approximate"
    assert "Approximate candidate search (faiss IVF" in result.stderr
    # A pool this small gets one list that every query scans: the approximate search is exact here.
    assert results["candidate_recall"] == 1.0
    for key in ("load_and_mine_seconds", "bounded_eval_seconds", "seconds_to_first_step", "peak_rss_gib"):
        assert results[key] > 0, key
    assert results["global_step"] == 2
    assert results["evaluation"]["during_training"]["documents"] == 60
    assert results["evaluation"]["baseline_and_final"]["pool"] == "bounded"
    assert {"data", "models", "mining", "baseline_eval", "training", "final_eval"} <= set(results["stages"])
    # Never overwritten: a second run into the same folder is refused.
    again = run_script("bench_scale.py", "--pairs", "300", "--output-dir", str(out))
    assert again.returncode != 0 and "exists" in again.stderr
