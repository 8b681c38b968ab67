"""The scale benchmark end to end, in a tiny mode: synthetic pairs, a forced approximate search, a few steps."""

from __future__ import annotations

import json

import pytest

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


ABLATION_RUN = [
    "sample_size=48",
    "test_size=12",
    "dev_size=8",
    "num_epochs=1",
    "batch_size=16",
    "training.eval_steps=2",
    "training.save_steps=100",
    "training.logging_steps=1",
    "training.report_to=[]",
]


def test_ablation_runs_each_recipe_over_the_seeds_and_picks_one_on_the_dev_questions(tmp_path):
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text("default: {}\nin-batch-only:\n  mining.num_negatives: 0\n")
    result = run_script(
        "bench_quality.py",
        "--data",
        "packaged:construction-faq",
        "--config",
        "configs/run_embedding_mnrl.yaml",
        "--recipes",
        str(recipes),
        "--seeds",
        "12",
        "--output-dir",
        str(tmp_path / "ablation"),
        *ABLATION_RUN,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "ablation").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert [run["recipe"] for run in results["runs"]] == ["default", "in-batch-only"]
    assert results["recipes"]["in-batch-only"] == ["mining.num_negatives=0"]
    # In-batch negatives only: every training pair is a row, with no mined negative.
    in_batch = results["runs"][1]["data"]
    assert in_batch["train_triplets"] == in_batch["train_pairs"]
    assert not (folder / "in-batch-only-seed12" / "mining.json").exists()
    summary = {entry["recipe"]: entry for entry in results["summary"]}
    for entry in summary.values():
        assert 0 < entry["ndcg@10"]["mean"] <= 1 and entry["ndcg@10"]["half_range"] == 0  # one seed: no spread
        assert entry["steps"] > 0 and entry["mining_minutes"] > 0
        assert "dev_ndcg@10" in entry
    assert results["choice"]["chosen_on"] == "dev"
    assert results["choice"]["best"] in summary
    table = (folder / "results.md").read_text()
    assert "| in-batch-only | 1 |" in table and "Best on the dev questions" in table
    # Each run is an ordinary run folder with its own report.
    assert (folder / "in-batch-only-seed12" / "report.md").is_file()
    assert (folder / "default-seed12" / "mining.json").is_file()

    # Continued with the same recipes, the finished runs are read back, not trained again.
    continued = continue_ablation(folder, recipes)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert continued.stdout.count("finished earlier") == 2 and "Epoch" not in continued.stderr
    assert json.loads((folder / "results.json").read_text())["runs"] == results["runs"]
    # A run that finished after results.json was last written is read back from its own metrics.json too.
    (folder / "results.json").write_text(json.dumps({**results, "runs": results["runs"][:1]}))
    continued = continue_ablation(folder, recipes)
    assert continued.returncode == 0 and continued.stdout.count("finished earlier") == 2, continued.stderr[-2000:]
    reread = json.loads((folder / "results.json").read_text())["runs"][1]
    assert reread["final"] == results["runs"][1]["final"] and reread["seconds"] > 0
    # ... and only with the data, config, overrides and recipes those runs had.
    recipes.write_text("default: {}\nin-batch-only:\n  mining.num_negatives: 1\n")
    for extra, message in (([], "recipe 'in-batch-only' was"), (["seed=3"], "sets these itself")):
        refused = continue_ablation(folder, recipes, *extra)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-2000:]
    refused = run_script(
        "bench_quality.py", "--data", "packaged:construction-faq", "--continue", str(folder), *ABLATION_RUN
    )
    assert refused.returncode == 2 and "BENCH_CONFIG configs/run_embedding_mnrl.yaml, not" in refused.stderr


def continue_ablation(folder, recipes, *extra: str):
    """bench_quality.py continuing ``folder`` on the FAQ, default config and seed 12, as the ablation test ran."""
    return run_script(
        "bench_quality.py", "--data", "packaged:construction-faq", "--config", "configs/run_embedding_mnrl.yaml",
        "--recipes", str(recipes), "--seeds", "12", "--continue", str(folder), *ABLATION_RUN, *extra,
    )  # fmt: skip


def test_ablation_recipes_are_checked_before_anything_runs(tmp_path):
    from embedft.bench.quality import load_recipes
    from embedft.errors import ConfigError

    good = tmp_path / "good.yaml"
    good.write_text(
        "default:\nwide: {mining.range_max: 200, evaluation.matryoshka_dims: [128, 64], mining.margin: null}\n"
    )
    assert load_recipes(good) == {
        "default": [],
        "wide": ["mining.range_max=200", "evaluation.matryoshka_dims=[128, 64]", "mining.margin=null"],
    }
    for text, message in (
        ("- a\n- b\n", "must map recipe names"),
        ("seeded: {seed: 3}\n", "sets seed"),
        ("odd: [1, 2]\n", "must map config keys"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_recipes(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipes(tmp_path / "missing.yaml")


def test_the_default_changes_only_when_a_recipe_beats_it_by_more_than_the_seed_spread():
    from embedft.bench.quality import choose_recipe

    def entry(name, mean, half_range):
        return {
            "recipe": name,
            "seeds": [12, 13],
            "ndcg@10": {"mean": 0.5, "half_range": 0.0},
            "dev_ndcg@10": {"mean": mean, "half_range": half_range},
        }

    close = choose_recipe([entry("default", 0.80, 0.004), entry("better", 0.806, 0.003)])
    assert close["best"] == "better" and close["chosen_on"] == "dev" and not close["beats_default"]
    clear = choose_recipe([entry("default", 0.80, 0.004), entry("better", 0.82, 0.003)])
    assert clear["beats_default"] and clear["gain_over_default"] == pytest.approx(0.02)
    assert "beats_default" not in choose_recipe([entry("default", 0.9, 0.0), entry("worse", 0.8, 0.0)])
    one_seed = [{**entry("default", 0.80, 0.0), "seeds": [12]}, {**entry("better", 0.82, 0.0), "seeds": [12]}]
    assert not choose_recipe(one_seed)["beats_default"]  # no spread to weigh the gain against


def test_a_continued_ablation_may_leave_out_recipes_it_ran_before(tmp_path):
    from embedft.bench.quality import finished_runs
    from embedft.errors import ConfigError

    rows = [{"recipe": "default", "seed": 12, "final": {}}, {"recipe": "wide", "seed": 12, "final": {}}]
    results = {"data": "d", "config": "c", "overrides": [], "recipes": {"default": [], "wide": ["a=1"]}, "runs": rows}
    (tmp_path / "results.json").write_text(json.dumps(results))
    for row in rows:
        (tmp_path / f"{row['recipe']}-seed12").mkdir()
        (tmp_path / f"{row['recipe']}-seed12" / "metrics.json").write_text("{}")
    assert set(finished_runs(tmp_path, "d", "c", [], {"default": []})) == {"default-seed12", "wide-seed12"}
    with pytest.raises(ConfigError, match="recipe 'wide' was"):
        finished_runs(tmp_path, "d", "c", [], {"wide": ["a=2"]})
    with pytest.raises(ConfigError, match="DATA d, not e"):
        finished_runs(tmp_path, "e", "c", [], None)


def test_an_ablation_runs_every_recipe_on_a_seed_before_the_next_seed(tmp_path, monkeypatch):
    """Stopped early, an ablation has every recipe on the first seed; its tables still list recipe by recipe."""
    import embedft.bench.quality

    started = []

    def fake_run(config_path, data, seed, output_dir, run_name, overrides, earlier_seconds=None):
        started.append(run_name)
        (output_dir / run_name).mkdir(parents=True)
        scores = {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5, "triplet_accuracy": 0.5}
        timings = {"mining_seconds": 60.0, "training_seconds": 60.0}
        return {"seed": seed, "baseline": scores, "final": scores, "final_dev": scores, "data": {},
                "timings": timings, "global_step": 3, "loss": 0.1, "seconds": 1.0}  # fmt: skip

    monkeypatch.setattr(embedft.bench.quality, "run_training_job", fake_run)
    recipes = {"default": [], "wide": ["batch_size=64"]}
    folder, table = embedft.bench.quality.run_quality_benchmark("d", "c", [12, 13], tmp_path, [], recipes)
    assert started == ["default-seed12", "wide-seed12", "default-seed13", "wide-seed13"]
    runs = json.loads((folder / "results.json").read_text())["runs"]
    order = [(run["recipe"], run["seed"]) for run in runs]
    assert order == [("default", 12), ("default", 13), ("wide", 12), ("wide", 13)]
    assert table.index("| default seed 13 |") < table.index("| wide seed 12 |")
