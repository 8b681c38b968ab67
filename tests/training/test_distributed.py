"""Training on several processes: two CPU processes with gloo under torchrun (the launcher `make train-embed NPROC=2`
uses), the gathered in-batch negatives, rank 0 alone writing, a dying rank stopping everyone, the even sampler."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from embedft.cli.torchrun import check_layout, check_port_free, torchrun_arguments
from embedft.errors import ConfigError
from tests.conftest import ROOT, make_dry_run, run_script

BATCH_SIZE = 8
DDP_RUN = [
    "sample_size=64",
    "test_size=16",
    f"batch_size={BATCH_SIZE}",
    "training.max_steps=3",
    "training.eval_steps=2",
    "training.save_steps=2",
    "training.logging_steps=1",
    "evaluation.similarity_sample=50",
]


def launch(probe_dir: Path, *overrides: str, nproc: int = 2, timeout: int = 600, **env: str):
    """``python -m embedft.cli.torchrun --nproc N -- tests/training/distributed_probe.py key=value ...``, as
    ``make train-embed NPROC=N`` runs the training script; the probe records what each process did under
    ``probe_dir``."""
    probe_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "embedft.cli.torchrun",
            "--nproc",
            str(nproc),
            "--",
            "tests/training/distributed_probe.py",
            *overrides,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PROBE_DIR": str(probe_dir), **env},
    )


def probe(probe_dir: Path, rank: int) -> dict:
    return json.loads((probe_dir / f"rank{rank}.json").read_text())


@pytest.fixture(scope="module")
def two_process_runs(module_tmp_path):
    """A 2-process run, the same run again, and the same job on one process."""
    root = module_tmp_path
    runs = {}
    for name, nproc in (("first", 2), ("second", 2), ("single", 1)):
        result = launch(root / f"probe-{name}", *DDP_RUN, f"output_dir={root / name}", nproc=nproc)
        assert result.returncode == 0, result.stderr[-4000:]
        runs[name] = (root / name / "latest").resolve(), root / f"probe-{name}", result
    return runs


def test_each_query_is_scored_against_the_global_batch(two_process_runs):
    run_dir, probe_dir, _ = two_process_runs["first"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["world_size"] == 2
    assert metrics["training"]["global_batch"] == 2 * BATCH_SIZE
    assert metrics["training"]["global_step"] == 3
    for rank in (0, 1):
        shapes = probe(probe_dir, rank)["similarity_shapes"]
        assert len(shapes) == 3  # one per step, the same on both processes
        # This process's 8 queries against both processes' answers and mined negatives: 2 x 8 x (1 + 1).
        assert all(shape == [BATCH_SIZE, 2 * BATCH_SIZE * 2] for shape in shapes)
    _, single_probe, _ = two_process_runs["single"]
    assert probe(single_probe, 0)["similarity_shapes"][0] == [BATCH_SIZE, BATCH_SIZE * 2]  # one process: no gather


def test_only_rank_0_writes_and_the_final_model_loads(two_process_runs):
    run_dir, probe_dir, result = two_process_runs["first"]
    assert probe(probe_dir, 1)["wrote"] == []
    wrote = probe(probe_dir, 0)["wrote"]
    assert {"final model", "json", "report", "latest", "complete"} <= set(wrote)
    assert wrote.count("final model") == 1
    assert result.stdout.count("Run finished") == 1  # the summary is printed once
    assert len([p for p in run_dir.parent.iterdir() if p.is_dir() and not p.is_symlink()]) == 1  # one run folder
    from sentence_transformers.sentence_transformer import SentenceTransformer

    assert SentenceTransformer(str(run_dir / "final")).encode(["q"]).shape == (1, 384)
    assert sorted(p.name for p in (run_dir / "checkpoints" / "checkpoint-2").glob("rng_state_*")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]


def test_split_and_triplets_equal_the_one_process_run(two_process_runs):
    (first, _, _), (single, _, _) = (two_process_runs[name] for name in ("first", "single"))
    for name in ("split.json", "train_triplets.jsonl", "eval_triplets.jsonl", "baseline.json"):
        assert (first / "data" / name).read_bytes() == (single / "data" / name).read_bytes(), name
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (first, single)]
    assert metrics[0]["baseline"] == metrics[1]["baseline"]  # rank 0 scored the baseline as one process would
    assert metrics[0].keys() == metrics[1].keys()  # same shape as a one-process run
    assert metrics[1]["training"]["world_size"] == 1


def test_a_second_run_with_the_same_seed_gives_the_same_metrics(two_process_runs):
    first, second = (
        json.loads((two_process_runs[name][0] / "metrics.json").read_text()) for name in ("first", "second")
    )
    assert first["baseline"] == second["baseline"]
    assert first["final"] == second["final"]
    assert first["training"]["train_loss"] == second["training"]["train_loss"]
    untimed = [[{k: v for k, v in e.items() if k != "eval_runtime"} for e in m["history"]] for m in (first, second)]
    assert untimed[0] == untimed[1]  # every step's loss, learning rate and scores


def test_a_dying_rank_stops_every_rank_and_the_run_resumes_to_the_same_metrics(two_process_runs, tmp_path):
    output_dir = tmp_path / "out"
    # Rank 1 dies in step 3, after the checkpoint of step 2.
    died = launch(tmp_path / "probe", *DDP_RUN, f"output_dir={output_dir}", PROBE_KILL_RANK="1", PROBE_KILL_STEP="3")
    assert died.returncode != 0
    assert "error: training process rank 1 exited with code 3" in died.stderr
    assert not (output_dir / "latest").exists()
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    assert (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()

    one_process = run_script("train_embed.py", "--resume", str(run_dir))
    assert one_process.returncode == 2
    assert "was training on 2 process(es) and is resumed on 1: resume it with NPROC=2" in one_process.stderr

    resumed = launch(tmp_path / "probe-resumed", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_step"] == 2
    assert metrics["training"]["global_step"] == 3
    # The same seed on the same CPU: the resumed run ends where the uninterrupted one did.
    first, _, _ = two_process_runs["first"]
    reference = json.loads((first / "metrics.json").read_text())
    assert metrics["final"] == reference["final"]
    assert metrics["training"]["train_loss"] == pytest.approx(reference["training"]["train_loss"], rel=1e-6)
    logged, expected = ([e for e in m["history"] if "loss" in e] for m in (metrics, reference))
    assert [e["step"] for e in logged] == [e["step"] for e in expected]
    assert [e["loss"] for e in logged] == pytest.approx([e["loss"] for e in expected])


def test_an_error_on_rank_0_before_training_reaches_every_rank(tmp_path):
    missing = tmp_path / "missing.jsonl"
    result = launch(tmp_path / "probe", f"dataset_name={missing}", f"output_dir={tmp_path / 'out'}", timeout=300)
    assert result.returncode == 2
    assert "error: rank 0 stopped before training:" in result.stderr  # rank 1's line, with rank 0's reason
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_launch_refuses_a_port_in_use_and_a_wrong_layout():
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigError, match=f"MASTER_PORT {port} is already in use"):
            check_port_free(port)
    with pytest.raises(ConfigError, match="NODE_RANK must lie in 0..1"):
        check_layout(2, 2, 2, "10.0.0.1")
    with pytest.raises(ConfigError, match="need MASTER_ADDR"):
        check_layout(8, 2, 1, None)
    assert "--standalone" in torchrun_arguments(8, 1, 0, None, None)  # one machine: torchrun picks a free port
    assert torchrun_arguments(8, 2, 1, "10.0.0.1", 29400)[-6:] == [
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29400",
    ]


def test_make_runs_one_process_without_torchrun_and_several_with_it():
    def recipe(*variables: str) -> str:
        shown = make_dry_run("-W", "pyproject.toml", "train-embed", *variables)
        return [line for line in shown.splitlines() if "train_embed.py" in line][0]

    assert recipe().startswith(".venv/bin/python scripts/train_embed.py")
    assert "-m embedft.cli.torchrun --nproc 4 --nnodes 1" in recipe("NPROC=4")
    assert "--master-addr 10.0.0.1 --master-port 29400" in recipe(
        "NNODES=2", "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29400"
    )


def duplicate_heavy_pairs(rows: int = 45) -> Dataset:
    """Pairs where many share an answer, so a no-duplicates batch often cannot be filled."""
    return Dataset.from_dict({"query": [f"q{i}" for i in range(rows)], "answer": [f"a{i % 12}" for i in range(rows)]})


@pytest.mark.parametrize("num_processes", [2, 3])
def test_even_sampler_gives_every_rank_the_same_number_of_full_batches(num_processes):
    from accelerate.data_loader import BatchSamplerShard
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    from embedft.training.sampler import EvenNoDuplicatesBatchSampler

    pairs = duplicate_heavy_pairs()

    def batches_per_rank(sampler_class, **kwargs) -> list[list[list[int]]]:
        per_rank = []
        for rank in range(num_processes):
            sampler = sampler_class(pairs, batch_size=8, drop_last=False, seed=12, **kwargs)
            # How the trainer deals batches out under DDP (sentence-transformers sets even_batches=False).
            shard = BatchSamplerShard(sampler, num_processes=num_processes, process_index=rank, even_batches=False)
            per_rank.append(list(shard))
        return per_rank

    # The plain sampler leaves the ranks unequal: the one with a batch more would wait forever for the others.
    plain = batches_per_rank(NoDuplicatesBatchSampler)
    assert len({len(batches) for batches in plain}) > 1 or any(len(b) < 8 for r in plain for b in r)
    even = batches_per_rank(EvenNoDuplicatesBatchSampler, num_replicas=num_processes)
    sampler = EvenNoDuplicatesBatchSampler(pairs, batch_size=8, drop_last=False, seed=12, num_replicas=num_processes)
    assert len({len(batches) for batches in even}) == 1
    assert len(even[0]) == len(sampler) // num_processes
    assert len(sampler) % num_processes == 0
    for batches in even:
        for batch in batches:
            assert len(batch) == 8
            assert len({pairs[i]["answer"] for i in batch}) == 8  # still no duplicate inside a batch


def test_a_resumed_run_starts_its_process_group_for_its_own_device(tmp_path):
    # The backend (gloo or NCCL) follows the device the run trains on: a resumed run keeps its saved device,
    # whatever the command line's config says.
    from embedft.config.parsing import load_config
    from embedft.run.resume import open_new_run, training_config_device

    saved = load_config(None, [f"output_dir={tmp_path}", "device=cpu"])
    files, lock = open_new_run(saved)
    lock.close()
    command_line = load_config(None, [f"output_dir={tmp_path}", "device=auto"])
    assert training_config_device(command_line, None) == "auto"
    assert training_config_device(command_line, "latest") == "cpu"
    assert training_config_device(command_line, str(files.run_dir)) == "cpu"
