"""The quality benchmark and the ablation: ordinary runs over seeds and recipes, and their tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from embedft.errors import ConfigError, EmbedftError
from embedft.io import read_json, write_json
from embedft.run.files import RunFiles

QUALITY_METRICS = ("ndcg@10", "mrr@10", "recall@10", "triplet_accuracy")

ABLATION_METRICS = ("ndcg@10", "mrr@10", "recall@10")

DEFAULT_RECIPE = "default"  # the recipe with no overrides: what every other recipe is compared with

SET_BY_BENCHMARK = ("output_dir", "run_name", "seed", "dataset_name")


def load_recipes(path: str | Path) -> dict[str, list[str]]:
    """An ablation's recipes, ``name: {config.key: value, ...}`` in a YAML file, as ``key=value`` overrides.

    Raises:
        ConfigError: the file cannot be read, is not a mapping of mappings, or sets a key the benchmark sets itself.
    """
    import yaml

    path = Path(path)
    try:
        recipes = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the recipes {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(recipes, dict) or not recipes:
        raise ConfigError(f"{path} must map recipe names to config overrides, e.g. 'margin: {{mining.margin: 0.1}}'")
    overrides = {}
    for name, keys in recipes.items():
        keys = keys or {}
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: recipe '{name}' must map config keys to values, got {keys!r}")
        fixed = [key for key in keys if key in SET_BY_BENCHMARK]
        if fixed:
            raise ConfigError(f"{path}: recipe '{name}' sets {', '.join(fixed)}, which the benchmark sets itself")
        overrides[str(name)] = [
            f"{key}={yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix('...').strip()}"
            for key, value in keys.items()
        ]
    return overrides


def run_name_for(recipe: str | None, seed: int) -> str:
    """The folder name of one benchmark run."""
    return f"{recipe}-seed{seed}" if recipe else f"seed{seed}"


def run_training_job(
    config_path: str,
    data: str,
    seed: int,
    output_dir: Path,
    run_name: str,
    overrides: list[str],
    earlier_seconds: float | None = None,
) -> dict[str, Any]:
    """One ordinary run of scripts/train_embed.py in its own process (its folder, metrics.json and report are kept).
    A folder of that name left by a stopped benchmark is resumed (from its last checkpoint, or with its own saved
    config and cached triplets when it had none) instead of started again, or read back if it had finished (its
    wall time is then ``earlier_seconds``, what the earlier benchmark measured, else the run's own total).

    Returns:
        The row the benchmark tables read: baseline, final (and final_dev), timings, steps and wall seconds.

    Raises:
        EmbedftError: the run failed (its own output says why).
    """
    import subprocess
    import sys

    files = RunFiles(output_dir / run_name)
    # The embedft command in a process of its own (python -m embedft, so an installed embedft runs it too): each run
    # starts with fresh memory, logging and random state, as it would from the command line.
    train = [sys.executable, "-m", "embedft", "train"]
    if files.metrics.is_file():
        command = []  # finished earlier
    elif files.run_dir.is_dir():
        command = [*train, "--resume", str(files.run_dir)]
    else:
        command = [
            *train,
            "--config",
            config_path,
            f"dataset_name={data}",
            f"seed={seed}",
            f"output_dir={output_dir}",
            f"run_name={run_name}",
            *overrides,
        ]
    print(f"== {run_name}: {' '.join(command) or f'finished earlier in {output_dir}, read back'}", flush=True)
    started = time.perf_counter()
    if command and subprocess.run(command).returncode != 0:
        raise EmbedftError(f"the run {run_name} failed (see its output above)")
    metrics = read_json(files.metrics)
    return {
        "seed": seed,
        "baseline": metrics["baseline"],
        "final": metrics["final"],
        **({"final_dev": metrics["final_dev"]} if "final_dev" in metrics else {}),
        "data": metrics["data"],
        "timings": metrics["timings"],
        "global_step": metrics["training"]["global_step"],
        "loss": metrics["training"].get("loss"),
        "seconds": time.perf_counter() - started
        if command
        else earlier_seconds or metrics["timings"]["total_seconds"],
    }


def seeds_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run (recipe and seed), baseline -> final per metric, and the wall time."""
    header = "| run | " + " | ".join(f"{m} baseline | {m} final" for m in QUALITY_METRICS) + " | wall time |"
    lines = [header, "| " + " | ".join(["---"] * (2 * len(QUALITY_METRICS) + 2)) + " |"]
    for row in rows:
        cells = [
            f"{row['baseline'].get(m, float('nan')):.4f} | {row['final'].get(m, float('nan')):.4f}"
            for m in QUALITY_METRICS
        ]
        name = f"{row['recipe']} seed {row['seed']}" if "recipe" in row else f"seed {row['seed']}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def spread(values: list[float]) -> dict[str, float]:
    """Mean and half the range between seeds: ``mean +- half_range`` covers every seed's value."""
    return {"mean": float(np.mean(values)), "half_range": (max(values) - min(values)) / 2}


def recipe_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per recipe, in the order first run: final test metrics, the final model's dev NDCG@10 (when the runs held
    out dev questions), mining and training minutes, optimizer steps, over its seeds."""
    summary = []
    for recipe in dict.fromkeys(row["recipe"] for row in rows):
        runs = [row for row in rows if row["recipe"] == recipe]
        entry: dict[str, Any] = {"recipe": recipe, "seeds": [row["seed"] for row in runs]}
        for metric in ABLATION_METRICS:
            entry[metric] = spread([row["final"][metric] for row in runs])
        if all("final_dev" in row for row in runs):
            entry["dev_ndcg@10"] = spread([row["final_dev"]["ndcg@10"] for row in runs])
        entry["mining_minutes"] = float(np.mean([row["timings"]["mining_seconds"] for row in runs])) / 60
        entry["training_minutes"] = float(np.mean([row["timings"]["training_seconds"] for row in runs])) / 60
        entry["steps"] = int(np.mean([row["global_step"] for row in runs]))
        summary.append(entry)
    return summary


def choose_recipe(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The best recipe by the dev questions' NDCG@10 (test NDCG@10 when no run held out dev questions), and whether
    it beats :data:`DEFAULT_RECIPE` by more than the two recipes' spreads between seeds together."""
    key = "dev_ndcg@10" if all("dev_ndcg@10" in entry for entry in summary) else "ndcg@10"
    best = max(summary, key=lambda entry: entry[key]["mean"])
    choice = {"chosen_on": "dev" if key == "dev_ndcg@10" else "test", "best": best["recipe"]}
    default = next((entry for entry in summary if entry["recipe"] == DEFAULT_RECIPE), None)
    if default is not None and best is not default:
        gain = best[key]["mean"] - default[key]["mean"]
        noise = best[key]["half_range"] + default[key]["half_range"]
        # One seed has no spread to measure the gain against: never a reason to change the default.
        enough_seeds = min(len(best["seeds"]), len(default["seeds"])) >= 2
        choice.update(gain_over_default=gain, seed_spread=noise, beats_default=enough_seeds and gain > noise)
    return choice


def ablation_table(summary: list[dict[str, Any]], choice: dict[str, Any]) -> str:
    """Markdown: one row per recipe with mean +- half-range over seeds, then which recipe the dev questions pick."""
    has_dev = all("dev_ndcg@10" in entry for entry in summary)
    header = (
        "| recipe | seeds | "
        + " | ".join(f"test {m}" for m in ABLATION_METRICS)
        + (" | dev ndcg@10" if has_dev else "")
        + " | mining | training | steps |"
    )
    lines = [header, "| " + " | ".join(["---"] * (len(ABLATION_METRICS) + 5 + has_dev)) + " |"]

    def cell(value: dict[str, float]) -> str:
        return f"{value['mean']:.4f} ± {value['half_range']:.4f}"

    for entry in summary:
        cells = [cell(entry[m]) for m in ABLATION_METRICS] + ([cell(entry["dev_ndcg@10"])] if has_dev else [])
        lines.append(
            f"| {entry['recipe']} | {len(entry['seeds'])} | "
            + " | ".join(cells)
            + f" | {entry['mining_minutes']:.1f} min | {entry['training_minutes']:.1f} min | {entry['steps']} |"
        )
    verdict = f"\nBest on the {choice['chosen_on']} questions: **{choice['best']}**"
    if "beats_default" in choice:
        verdict += (
            f", {choice['gain_over_default']:+.4f} NDCG@10 over {DEFAULT_RECIPE} against a seed spread of "
            f"{choice['seed_spread']:.4f}: "
            + (
                "it beats the default."
                if choice["beats_default"]
                else "not beyond the spread (or a single seed), so the default stays."
            )
        )
    return "\n".join(lines) + "\n" + verdict


def finished_runs(
    folder: Path,
    data: str,
    config_path: str,
    overrides: list[str],
    recipes: dict[str, list[str]] | None,
) -> dict[str, float | None]:
    """The wall seconds of an earlier benchmark's runs (its ``results.json``), by run name, once its data set,
    config, overrides and recipes are checked against these. A recipe it ran but no longer names is left out of the
    new table (its folder stays).

    Raises:
        ConfigError: the folder holds no benchmark results, or ran another data set, config, overrides or recipe.
    """
    import json

    results_file = Path(folder) / "results.json"
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot continue {folder}: no readable results.json there ({error}); give a folder an earlier "
            "bench-quality or bench-ablation wrote"
        ) from None
    for name, given, earlier in (
        ("DATA", data, results.get("data")),
        ("BENCH_CONFIG", config_path, results.get("config")),
        ("SET", overrides, results.get("overrides")),
    ):
        if given != earlier:
            raise ConfigError(f"cannot continue {folder}: its runs had {name} {earlier}, not {given}; give the same")
    seconds = {}
    for row in results.get("runs", []):
        recipe = row.get("recipe")
        if recipe in (recipes or {}) and recipes[recipe] != results.get("recipes", {}).get(recipe):
            raise ConfigError(
                f"cannot continue {folder}: its recipe '{recipe}' was {results.get('recipes', {}).get(recipe)}, "
                f"now {recipes[recipe]}; rename the changed recipe"
            )
        seconds[run_name_for(recipe, row["seed"])] = row.get("seconds")
    return seconds


def run_quality_benchmark(
    data: str,
    config_path: str,
    seeds: list[int],
    output_dir: Path,
    overrides: list[str],
    recipes: dict[str, list[str]] | None = None,
    continue_from: Path | None = None,
) -> tuple[Path, str]:
    """Every recipe (none: the config alone) over every seed on one data set, seed by seed; ``results.json`` and
    ``results.md`` in a new time-stamped folder are rewritten after each run, so a stopped benchmark keeps what it
    finished. The tables list the runs recipe by recipe.

    With ``continue_from`` (an earlier results folder) the results go there instead: a run it finished is read
    back, not run again, so a long ablation can be stopped and continued, or given more recipes and seeds.

    Returns:
        The results folder and its Markdown table.
    """
    import platform
    from datetime import datetime

    fixed = [item for item in overrides if item.split("=", 1)[0] in SET_BY_BENCHMARK]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: the benchmark sets these itself (use --output-dir, --seeds, --data)")
    folder = continue_from or Path(output_dir) / datetime.now().strftime("%Y%m%d-%H%M%S")
    earlier_seconds = finished_runs(continue_from, data, config_path, overrides, recipes) if continue_from else {}
    rows: list[dict[str, Any]] = []
    table = ""
    recipes_to_run = recipes or {None: []}
    recipe_names = list(recipes_to_run)
    # Seed by seed: a benchmark stopped early has every recipe on the first seed before any on the second.
    for seed in seeds:
        for recipe, recipe_overrides in recipes_to_run.items():
            run_name = run_name_for(recipe, seed)
            row = run_training_job(
                config_path,
                data,
                seed,
                folder,
                run_name,
                [*overrides, *recipe_overrides],
                earlier_seconds.get(run_name),
            )
            rows.append({"recipe": recipe, **row} if recipe else row)
            rows.sort(key=lambda row: (recipe_names.index(row.get("recipe")), seeds.index(row["seed"])))
            table = seeds_table(rows)
            summary = {
                "data": data,
                "config": config_path,
                "overrides": overrides,
                "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
                "runs": rows,
            }
            if recipes:
                summary["recipes"] = recipes
                summary["summary"] = recipe_summary(rows)
                summary["choice"] = choose_recipe(summary["summary"])
                table = ablation_table(summary["summary"], summary["choice"]) + "\n\n" + table
            write_json(folder / "results.json", summary)
            (folder / "results.md").write_text(table + "\n", encoding="utf-8")
    return folder, table
