"""The installed ``embedft`` command, and what a finished run leaves for people and tools: the final model's card,
its custom prompts, provenance in metrics.json, and the hub push (offline here: one warning, the model kept)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

EMBEDFT = Path(sys.executable).parent / "embedft"  # installed by [project.scripts]
TINY_RUN = [
    "sample_size=48",
    "test_size=16",
    "batch_size=16",
    "training.max_steps=2",
    "training.eval_steps=2",
    "training.save_steps=2",
    "training.logging_steps=1",
    "query_prompt='query: '",
    "document_prompt='passage: '",
    "language=en",
    "license=apache-2.0",
    "hub_model_id=embedft-tests/tiny-model",
]


def embedft(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the ``embedft`` console command as a user would (offline: the test environment sets HF_HUB_OFFLINE)."""
    return subprocess.run(
        [str(EMBEDFT), *args],
        cwd=ROOT,
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def finished_run(module_tmp_path):
    """One tiny run through ``embedft train``, with custom prompts, card settings and a hub repo to push to."""
    output_dir = module_tmp_path / "outputs"
    output_dir.mkdir()
    result = embedft("train", *TINY_RUN, f"output_dir={output_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return (output_dir / "latest").resolve(), result


def test_help_lists_the_commands_and_each_commands_arguments():
    result = embedft("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "infer", "report"):
        assert command in result.stdout
    train = embedft("train", "--help")
    assert train.returncode == 0 and "usage: embedft train" in train.stdout and "--resume" in train.stdout
    unknown = embedft("fly")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_train_prints_the_summary_and_report_rebuilds_the_report(finished_run):
    run_dir, result = finished_run
    assert f"Run finished: {run_dir}" in result.stdout and "ndcg@10" in result.stdout
    (run_dir / "report.md").unlink()
    report = embedft("report", str(run_dir))
    assert report.returncode == 0 and (run_dir / "report.md").is_file()
    missing = embedft("report", str(run_dir / "nothing"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "has no metrics.json" in missing.stderr


def test_final_card_names_the_data_set_and_has_the_baseline_final_table(finished_run):
    run_dir, _ = finished_run
    card = (run_dir / "final" / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "Unnamed Dataset" not in card
    assert "English construction FAQ (zaragoza-construction-faq)" in card
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "license: apache-2.0" in card
    assert "embedft-tests/tiny-model" in card  # the usage example loads the hub id
    baseline, final = metrics["baseline"]["ndcg@10"], metrics["final"]["ndcg@10"]
    assert f"| ndcg@10 | {baseline:.4f} | {final:.4f} | {final - baseline:+.4f} |" in card


def test_custom_prompts_are_saved_with_the_final_model(finished_run):
    from sentence_transformers import SentenceTransformer

    run_dir, _ = finished_run
    saved = json.loads((run_dir / "final" / "config_sentence_transformers.json").read_text())
    assert saved["prompts"]["query"] == "query: " and saved["prompts"]["document"] == "passage: "
    model = SentenceTransformer(str(run_dir / "final"), device="cpu")
    text = "how long does a permit take?"
    np.testing.assert_allclose(model.encode_query([text]), model.encode([f"query: {text}"]), atol=1e-5)
    np.testing.assert_allclose(model.encode_document([text]), model.encode([f"passage: {text}"]), atol=1e-5)


def test_offline_push_is_one_warning_and_the_run_completes(finished_run):
    run_dir, result = finished_run
    warnings = [line for line in result.stderr.splitlines() if "Not pushed to embedft-tests/tiny-model" in line]
    assert len(warnings) == 1 and "hf upload embedft-tests/tiny-model" in warnings[0]
    assert "hf_" not in warnings[0].split("hf upload")[0]  # no token in the line
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["hub"]["model_id"] == "embedft-tests/tiny-model" and metrics["hub"]["pushed"] is False
    assert (run_dir / "final" / "model.safetensors").is_file() and (run_dir / "COMPLETE").is_file()


def test_metrics_record_versions_commit_and_hub_revisions(finished_run):
    run_dir, _ = finished_run
    provenance = json.loads((run_dir / "metrics.json").read_text())["provenance"]
    assert {"python", "torch", "transformers", "sentence-transformers", "datasets", "embedft"} <= set(
        provenance["versions"]
    )
    assert re.fullmatch(r"[0-9a-f]{40}", provenance["git_commit"])
    assert provenance["hub_revisions"] == {}  # the packaged model and data set come from no hub repo
