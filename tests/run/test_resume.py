"""Reliability: interrupted runs resume, a broken loss stops cleanly, a failed save leaves nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import SafetensorError

from embedft.errors import OutputError
from embedft.run.files import lock_run
from embedft.training.checkpoints import last_checkpoint, save_model_atomically
from tests.conftest import ROOT, run_script

TINY_RUN = [
    "sample_size=64",
    "test_size=16",
    "num_epochs=2",
    "batch_size=16",
    "training.eval_steps=4",
    "training.save_steps=2",
    "training.save_total_limit=null",
    "training.logging_steps=1",
    "evaluation.information_retrieval=false",
]


def wait_for_a_checkpoint(process: subprocess.Popen, output_dir, timeout: float = 400) -> list:
    """The run folders under ``output_dir`` once the first has a complete checkpoint (or the process ended, or
    ``timeout`` seconds passed)."""
    deadline = time.monotonic() + timeout
    runs = []
    while time.monotonic() < deadline and process.poll() is None:
        runs = [p for p in output_dir.glob("*") if (p / "checkpoints").is_dir()]
        if runs and last_checkpoint(runs[0] / "checkpoints"):
            break
        time.sleep(0.2)
    return runs


def test_run_killed_after_a_checkpoint_resumes_to_the_same_step_count(tmp_path):
    output_dir = tmp_path / "outputs"
    log = tmp_path / "run.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train_embed.py"), *TINY_RUN, f"output_dir={output_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        runs = wait_for_a_checkpoint(process, output_dir)
        assert process.poll() is None, f"the run ended before it could be killed: {log.read_text()[-2000:]}"
        with pytest.raises(OutputError, match="in use by another training process"):
            lock_run(runs[0])  # the training process holds its run folder
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    killed_at = int(last_checkpoint(run_dir / "checkpoints").rsplit("-", 1)[-1])
    assert killed_at < 8
    assert not (output_dir / "latest").exists()  # latest moves only when a run ends well
    assert not (run_dir / "metrics.json").exists()

    resumed = run_script("train_embed.py", "--resume", "latest", f"output_dir={output_dir}", "learning_rate=1e-4")
    assert resumed.returncode == 2 and "'learning_rate' cannot change on a resumed run" in resumed.stderr
    resumed = run_script("train_embed.py", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Reusing the mined triplets" in resumed.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["global_step"] == 8  # 64 training triplets / 16 a batch * 2 epochs
    assert [e["step"] for e in metrics["history"] if "loss" in e][-1] == 8
    assert (output_dir / "latest").resolve() == run_dir.resolve()

    from sentence_transformers.sentence_transformer import SentenceTransformer

    assert SentenceTransformer(str(run_dir / "final")).encode(["q"]).shape == (1, 384)
    again = run_script("train_embed.py", "--resume", str(run_dir))
    assert again.returncode == 2 and "already finished" in again.stderr

    # The same run without the kill ends where the resumed one did.
    whole = run_script("train_embed.py", *TINY_RUN, f"output_dir={tmp_path / 'uninterrupted'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference_dir = (tmp_path / "uninterrupted" / "latest").resolve()
    reference = json.loads((reference_dir / "metrics.json").read_text())
    assert reference["training"]["global_step"] == 8
    # The resumed process started after the killed one's last checkpoint, not from scratch...
    assert metrics["training"]["resumed_from_step"] == killed_at > 0
    assert "resumed_from_step" not in reference["training"]
    # ...and, the CPU being deterministic, ended exactly where the uninterrupted run did.
    assert metrics["baseline"] == reference["baseline"]  # same split and mined triplets
    assert metrics["final"] == reference["final"]
    similarities = (json.loads((d / "similarities.json").read_text()) for d in (run_dir, reference_dir))
    assert next(similarities) == next(similarities)  # every query-answer similarity, before and after
    from safetensors.torch import load_file

    weights, reference_weights = (load_file(d / "final" / "model.safetensors") for d in (run_dir, reference_dir))
    assert weights.keys() == reference_weights.keys()
    assert all(torch.equal(weights[name], reference_weights[name]) for name in weights)
    logged, expected = ([e for e in m["history"] if "loss" in e] for m in (metrics, reference))
    assert [e["step"] for e in logged] == [e["step"] for e in expected]
    assert [e["loss"] for e in logged] == pytest.approx([e["loss"] for e in expected])
    assert metrics["training"]["train_loss"] == pytest.approx(reference["training"]["train_loss"], rel=1e-6)


def test_ctrl_c_names_the_run_its_last_checkpoint_and_the_resume_command(tmp_path):
    output_dir = tmp_path / "outputs"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train_embed.py"), *TINY_RUN, f"output_dir={output_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`, nohup) ignores SIGINT, and the child would inherit that
        # and never see the Ctrl-C: the default comes back before the child starts, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for_a_checkpoint(process, output_dir)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    checkpoint = last_checkpoint(run_dir / "checkpoints")
    last_line = stderr.strip().splitlines()[-1]
    assert last_line == (
        f"interrupted: the run {run_dir} stopped after step {checkpoint.rsplit('-', 1)[-1]} ({checkpoint}); resume it "
        f"with: make train-embed RESUME={run_dir}"
    )
    assert "Traceback" not in stderr and last_line in (run_dir / "train.log").read_text()
    resumed = run_script("train_embed.py", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Continuing the training from {checkpoint} (step {checkpoint.rsplit('-', 1)[-1]})" in resumed.stderr


def test_non_finite_loss_stops_with_the_step_and_a_hint(tmp_path):
    # A temperature of 1e-40 makes the similarity scale overflow to infinity: the loss is NaN at once.
    result = run_script("train_embed.py", *TINY_RUN, "temperature=1e-40", f"output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "the training loss became nan at step 1: lower learning_rate" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "latest").exists()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), SafetensorError("No space left on device")])
def test_failed_save_leaves_no_half_written_model(tmp_path, minilm, monkeypatch, error):
    def disk_full(path, *args, **kwargs):
        (tmp_path / os.path.basename(path) / "model.safetensors").write_bytes(b"partial")
        raise error

    (tmp_path / ".final.partial-1").mkdir()  # left by an earlier save that crashed
    monkeypatch.setattr(minilm, "save", disk_full)
    with pytest.raises(OutputError, match="No space left on device .*nothing half-written"):
        save_model_atomically(minilm, tmp_path / "final")
    assert list(tmp_path.iterdir()) == []


def test_final_model_is_never_overwritten(tmp_path, minilm):
    (tmp_path / "final").mkdir()
    with pytest.raises(OutputError, match="never overwritten"):
        save_model_atomically(minilm, tmp_path / "final")


def test_a_run_in_use_by_another_process_is_not_resumed(tmp_path):
    from embedft.config.parsing import save_config
    from embedft.config.schema import RunConfig

    run_dir = tmp_path / "outputs" / "busy"
    run_dir.mkdir(parents=True)
    save_config(RunConfig(output_dir=str(tmp_path / "outputs")), run_dir / "config.yaml")
    handle = lock_run(run_dir)  # this test process plays the run still training
    try:
        result = run_script("train_embed.py", "--resume", str(run_dir))
    finally:
        handle.close()
    assert result.returncode == 2 and "is in use by another training process" in result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "config.yaml"]


def test_resume_latest_picks_the_newest_unfinished_run(tmp_path):
    from embedft.config.parsing import save_config
    from embedft.config.schema import RunConfig
    from embedft.run.files import find_resumable_run, mark_complete, point_latest

    runs = {}
    for age, name in enumerate(["finished-newest", "unfinished-newer", "unfinished-older"]):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        save_config(RunConfig(output_dir=str(tmp_path)), runs[name] / "config.yaml")
        stamp = time.time() - 100 * age
        os.utime(runs[name] / "config.yaml", (stamp, stamp))
    mark_complete(runs["finished-newest"])
    point_latest(runs["finished-newest"])
    (tmp_path / "no-config").mkdir()  # not a run folder
    assert find_resumable_run(tmp_path, "latest") == runs["unfinished-newer"]
    mark_complete(runs["unfinished-newer"])
    assert find_resumable_run(tmp_path, "latest") == runs["unfinished-older"]
    (runs["unfinished-older"] / "metrics.json").write_text("{}")  # a finished run made before COMPLETE existed
    with pytest.raises(OutputError, match="no unfinished run"):
        find_resumable_run(tmp_path, "latest")


def test_a_scored_run_resumed_from_another_folder_moves_latest_next_to_it(tmp_path, monkeypatch):
    """A run killed between metrics.json and COMPLETE is finished on resume. Its saved output_dir is relative to the
    folder it was started from; ``latest`` must still be moved beside the run, not under the current folder."""
    from embedft.config.parsing import save_config
    from embedft.config.schema import RunConfig
    from embedft.run.files import is_finished
    from embedft.run.pipeline import train_embed
    from tests.conftest import sample_metrics

    run_dir = tmp_path / "project" / "outputs" / "scored"
    run_dir.mkdir(parents=True)
    save_config(RunConfig(output_dir="outputs"), run_dir / "config.yaml")
    (run_dir / "metrics.json").write_text(json.dumps(sample_metrics()))
    (run_dir / "data").mkdir()
    (run_dir / "data" / "split.json").write_text("{}")  # made with the COMPLETE marker: unfinished without it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    finished_dir, metrics = train_embed(RunConfig(output_dir=str(run_dir.parent)), resume=str(run_dir))

    assert finished_dir == run_dir and metrics["final"]["ndcg@10"] == 0.7
    assert is_finished(run_dir) and (run_dir / "report.md").is_file()
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()
    assert list(elsewhere.iterdir()) == []
