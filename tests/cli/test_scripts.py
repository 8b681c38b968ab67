"""The commands as a user runs them: train, evaluate and infer end to end, and one-line errors on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, make_dry_run, run_script, write_jsonl

SMALL_RUN = [
    "sample_size=64",
    "test_size=16",
    "dev_size=8",
    "num_epochs=2",
    "batch_size=16",
    "training.eval_steps=4",
    "training.save_steps=4",
    "training.logging_steps=2",
    "evaluation.matryoshka_dims=[128]",
]


@pytest.fixture(scope="module")
def finished_run(module_tmp_path):
    """One real training run of the default config, shrunk to finish in about a minute, with the user's whole
    collection (every answer of the data set) passed as corpus_file."""
    from embedft.data.rows import clean_pairs
    from embedft.data.sources import load_pairs

    output_dir = module_tmp_path / "outputs"
    output_dir.mkdir()
    answers = clean_pairs(load_pairs("packaged:construction-faq"))[0]["answer"]
    collection = write_jsonl(output_dir.parent / "collection.jsonl", [{"text": text} for text in answers])
    result = run_script("train_embed.py", *SMALL_RUN, f"corpus_file={collection}", f"output_dir={output_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result


def test_training_run_writes_metrics_model_config_and_events(finished_run):
    from embedft.models.devices import cpu_has_bf16

    output_dir, result = finished_run
    run_dir = (output_dir / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    names = ["ndcg@10", "mrr@10", "accuracy@1", "recall@1", "recall@10", "recall@100", "map@100"]
    for stage in ("baseline", "final"):  # ranking metrics first, then per truncated size, triplet accuracy last
        assert list(metrics[stage]) == [*names, *(f"{name}_dim128" for name in names), "triplet_accuracy"]
    assert metrics["final"]["ndcg@10"] > metrics["baseline"]["ndcg@10"]
    assert metrics["data"]["retrieval_pool"] == 503  # held-out questions rank every answer of the data set
    # The default config's bf16 is kept where this CPU has bf16 instructions; the run records which one it got.
    assert metrics["training"]["precision"] == ("bf16" if cpu_has_bf16() else "fp32")
    assert all("ndcg@10" in e for e in metrics["history"] if "triplet_accuracy" in e)
    data = metrics["data"]
    assert (data["eval_questions"], data["dev_questions"], data["train_pairs"]) == (16, 8, 64)
    # max_pool (2,000) holds the whole pool here: the step scores rank all 503 answers, like baseline and final.
    assert metrics["evaluation"]["during_training"] == {
        "split": "dev",
        "pool": "whole",
        "questions": 8,
        "documents": 503,
        "relevance": "binary",
        "questions_seen_answers": 0,  # the random split holds out whole answer groups: nothing seen in training
        "questions_unseen_answers": 8,
    }
    assert metrics["evaluation"]["baseline_and_final"] == {
        "split": "test",
        "pool": "whole",
        "questions": 16,
        "documents": 503,
        "relevance": "binary",
        "questions_seen_answers": 0,
        "questions_unseen_answers": 16,
    }
    # Two epochs of batches of 16: the mined rows, and the pairs short of a negative as their own batches.
    batches = math.ceil(data["train_triplets"] / 16) + math.ceil(data["train_pairs_in_batch"] / 16)
    assert data["train_triplets"] + data["train_pairs_in_batch"] == 64
    steps = metrics["training"]["global_step"]
    assert steps == 2 * batches and metrics["training"]["loss"] == "mnrl"
    assert [e["step"] for e in metrics["history"] if "triplet_accuracy" in e] == [*range(4, steps, 4), steps]
    # The final model on the dev questions, as the last step scored them (what bench-ablation chooses on).
    # The final model is the best checkpoint on the dev questions, merged with the base model as they chose.
    dev_curve = {e["step"]: e["ndcg@10"] for e in metrics["history"] if "ndcg@10" in e}
    best = max(dev_curve, key=lambda step: (dev_curve[step], -step))  # ties: the first
    assert metrics["training"]["chosen_step"] == best
    merge = metrics["merge"]
    assert merge["setting"] == "auto" and list(merge["dev_scores"]) == ["0.5", "0.7", "0.85", "1.0"]
    assert merge["weight"] == float(max(merge["dev_scores"], key=lambda a: (merge["dev_scores"][a], float(a))))
    assert metrics["final_dev"]["ndcg@10"] == pytest.approx(merge["dev_scores"][str(merge["weight"])], abs=1e-6)
    assert metrics["evaluation"]["precision"] == ("bf16" if cpu_has_bf16() else "fp32")
    assert (run_dir / "config.yaml").is_file() and (run_dir / "COMPLETE").is_file()
    assert (run_dir / "checkpoints" / f"checkpoint-{steps}").is_dir()
    assert "baseline" in result.stdout and "-> final" in result.stdout and str(run_dir) in result.stdout
    assert "report.md" in result.stdout.strip().splitlines()[-2] + result.stdout.strip().splitlines()[-1]

    from sentence_transformers.sentence_transformer import SentenceTransformer

    assert SentenceTransformer(str(run_dir / "final")).encode(["a question"]).shape == (1, 384)


def test_held_out_answers_from_corpus_file_never_become_training_negatives(finished_run):
    output_dir, _ = finished_run
    data_dir = (output_dir / "latest" / "data").resolve()

    def column(file: str, name: str) -> set[str]:
        lines = (data_dir / file).read_text(encoding="utf-8").splitlines()
        return {json.loads(line)[name] for line in lines}

    held_out = column("eval_triplets.jsonl", "answer") | column("dev_triplets.jsonl", "answer")
    negatives = column("train_triplets.jsonl", "negative")
    assert len(negatives) > 20 and not negatives & held_out
    metrics = json.loads((output_dir / "latest" / "metrics.json").read_text())
    assert metrics["data"]["corpus_file_held_out"] == len(held_out)


def copy_of_run(finished_run, destination: Path) -> Path:
    """A copy of the finished run in its own output folder, its config pointing there."""
    import shutil

    import yaml

    output_dir, _ = finished_run
    run_dir = destination / "run"
    shutil.copytree((output_dir / "latest").resolve(), run_dir, symlinks=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["output_dir"] = str(destination)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


def test_resume_finishes_a_run_killed_after_its_metrics_were_written(finished_run, tmp_path):
    run_dir = copy_of_run(finished_run, tmp_path)
    for name in ("COMPLETE", "report.md", "loss.png"):
        (run_dir / name).unlink()
    metrics = (run_dir / "metrics.json").read_text()
    result = run_script("train_embed.py", "--resume", "latest", "--config", str(run_dir / "config.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "COMPLETE").is_file() and (run_dir / "report.md").is_file() and (run_dir / "loss.png").is_file()
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert (run_dir / "metrics.json").read_text() == metrics  # nothing was trained or scored again


def test_resume_scores_a_saved_final_model_that_has_no_metrics_yet(finished_run, tmp_path):
    run_dir = copy_of_run(finished_run, tmp_path)
    before = json.loads((run_dir / "metrics.json").read_text())
    mining = (run_dir / "mining.json").read_text()
    for name in ("COMPLETE", "metrics.json", "similarities.json", "report.md"):
        (run_dir / name).unlink()
    result = run_script("train_embed.py", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training had finished" in result.stderr
    assert (run_dir / "mining.json").read_text() == mining  # reused triplets keep their own diagnostics
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["final"] == before["final"] and after["baseline"] == before["baseline"]
    assert after["training"]["global_step"] == before["training"]["global_step"]
    assert (run_dir / "COMPLETE").is_file()


def test_resume_refuses_cached_triplets_of_another_split(finished_run, tmp_path):
    run_dir = copy_of_run(finished_run, tmp_path)
    for name in ("COMPLETE", "metrics.json"):
        (run_dir / name).unlink()
    (run_dir / "data" / "split.json").write_text('{"train": "0", "test": "0"}')  # e.g. the data file changed
    result = run_script("train_embed.py", "--resume", str(run_dir))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "was made with another split than its config gives now" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_is_written_and_rebuilt_by_the_report_command(finished_run):
    output_dir, _ = finished_run
    run_dir = (output_dir / "latest").resolve()
    for name in ("report.md", "loss.png", "eval_metrics.png", "baseline_vs_final.png", "similarities.png"):
        assert (run_dir / name).stat().st_size > 0, name
    (run_dir / "loss.png").unlink()
    result = run_script("report.py", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / "loss.png").stat().st_size > 0


def test_mining_diagnostics_are_written_plotted_reported_and_logged(finished_run):
    output_dir, result = finished_run
    run_dir = (output_dir / "latest").resolve()
    mining = json.loads((run_dir / "mining.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    pairs = mining["pairs"]
    assert pairs["total"] == metrics["data"]["train_pairs"] == 64
    assert pairs["kept"] + pairs["without_negative"] + pairs["too_few_negatives"] == pairs["total"]
    assert mining["negatives"] == metrics["data"]["train_triplets"]  # one negative per triplet
    assert mining["scores"]["query_positive"]["count"] == 64
    assert sum(mining["scores"]["query_negative"]["histogram"]) == mining["negatives"]
    assert (run_dir / "mining.png").stat().st_size > 1000
    report = (run_dir / "report.md").read_text()
    assert "## Mining" in report and "](mining.png)" in report
    assert f"Mining: {pairs['kept']} of 64 pairs kept, negatives score" in result.stderr


def test_tensorboard_events_hold_loss_learning_rate_and_eval_metrics(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir, _ = finished_run
    events = EventAccumulator(str((output_dir / "latest" / "tensorboard").resolve()))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "eval/triplet_cosine_accuracy", "eval/loss"} <= tags
    assert "eval/ir_steps_cosine_ndcg@10" in tags and "eval/ir_cosine_ndcg@10" not in tags  # the step pool


def test_eval_embed_reproduces_the_runs_final_and_baseline_scores(finished_run, tmp_path):
    output_dir, _ = finished_run
    metrics = json.loads((output_dir / "latest" / "metrics.json").read_text())
    latest = run_script("eval_embed.py", f"output_dir={output_dir}", "--output", str(tmp_path / "eval.json"))
    assert latest.returncode == 0, latest.stderr[-3000:]
    scored = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert scored == metrics["final"]  # exactly: final is scored on the saved model, reloaded, like eval-embed does

    # The untouched base model, scored with the latest run's config (the same split), gives the run's baseline.
    base = run_script(
        "eval_embed.py",
        "--model",
        "packaged:all-MiniLM-L6-v2",
        f"output_dir={output_dir}",
        "--output",
        str(tmp_path / "base.json"),
    )
    assert base.returncode == 0, base.stderr[-3000:]
    scored = json.loads((tmp_path / "base.json").read_text())["metrics"]
    assert scored == metrics["baseline"]


def test_infer_embed_ranks_answers_from_arguments_and_stdin(finished_run):
    output_dir, _ = finished_run
    question = "How long does it take to get a building permit?"
    result = run_script("infer_embed.py", "--set", f"output_dir={output_dir}", "--top-k", "3", "--json", question)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = result.stdout.strip().splitlines()
    hits = json.loads(line)["hits"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert "week" in hits[0]["text"].lower()
    # The final evaluation kept the final model's pool embeddings in the run folder: only the query is encoded.
    pool = json.loads(((output_dir / "latest").resolve() / "metrics.json").read_text())["data"]["retrieval_pool"]
    assert f"Encoding the corpus {pool} texts: {pool} from the embedding cache, 0 to encode" in result.stderr

    piped = run_script(
        "infer_embed.py", "--set", f"output_dir={output_dir}", "--top-k", "1", stdin="what is a bygglov\n"
    )
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "Query: what is a bygglov" in piped.stdout and "  1. " in piped.stdout


def test_each_run_gets_its_own_folder_and_a_named_one_is_never_reused(finished_run):
    output_dir, _ = finished_run
    existing = (output_dir / "latest").resolve().name
    result = run_script("train_embed.py", f"output_dir={output_dir}", f"run_name={existing}")
    assert result.returncode == 2
    assert "already exists and is never overwritten" in result.stderr


def bad_data_file(tmp_path: Path, kind: str) -> str:
    if kind == "missing column":
        return str(write_jsonl(tmp_path / "pairs.jsonl", [{"question": "q", "answer": "a"}]))
    if kind == "empty":
        (tmp_path / "empty.jsonl").write_text("")
        return str(tmp_path / "empty.jsonl")
    if kind == "only duplicates":
        return str(write_jsonl(tmp_path / "dups.jsonl", [{"query": "q", "answer": "a"}] * 5))
    if kind == "malformed line":
        (tmp_path / "bad.jsonl").write_text('{"query": "q", "answer": "a"}\n{"query": \n', encoding="utf-8")
        return str(tmp_path / "bad.jsonl")
    if kind == "a file":
        (tmp_path / "a_file").write_text("x")
        return str(tmp_path / "a_file" / "outputs")
    if kind == "not utf-8":
        (tmp_path / "latin1.jsonl").write_bytes(b'{"query": "caf\xe9", "answer": "x"}\n')
        return str(tmp_path / "latin1.jsonl")
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["num_epoch=1"], "unknown config key 'num_epoch': did you mean 'num_epochs'?"),
        (["batch_size=many"], "'batch_size' must be an integer, got 'many'"),
        (["learning_rate=0"], "'learning_rate' must be greater than 0"),
        (["test_size=600"], "test_size=600 must be smaller than the number of distinct questions (497)"),
        (["model_name=./no/such/model"], "model_name './no/such/model' does not exist"),
        (["model_name=google/embeddinggemma-300m"], "needs a network connection, or set model_name to a local path"),
        (["dataset_name=ayushexel/xyneft"], "needs a network connection, or set dataset_name to a local path"),
        (["dataset_name=missing.jsonl"], "data file missing.jsonl does not exist"),
        (["dataset_name=<missing column>"], "column 'query' not found"),
        (["dataset_name=<empty>"], "empty.jsonl is empty: it must hold (query, answer) pairs"),
        (["dataset_name=<not utf-8>"], "is not UTF-8 text (line 1)"),
        (["dataset_name=<malformed line>"], "bad.jsonl line 2 is not valid JSON"),
        (["dataset_name=<only duplicates>"], "must be smaller than the number of distinct questions (1)"),
        (["mining.sampling_strategy=best"], "'mining.sampling_strategy' must be 'top' or 'random'"),
        (["mining.range_min=20", "mining.range_max=10"], "must be smaller than 'mining.range_max'"),
        (["mining.num_negatives=50", "mining.range_max=10"], "exceeds the candidate window"),
        (["corpus_file=missing.txt"], "corpus_file missing.txt does not exist"),
        (["split_column=fold"], "split_column 'fold' not found"),
        (["output_dir=<a file>"], "cannot create output_dir"),
        (["device=gpu"], "'device' is 'gpu', not a device: use cpu, cuda"),
        pytest.param(
            ["mining.device=cuda"],
            "'mining.device' is 'cuda' but no CUDA GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
        (["evaluation.matryoshka_dims=[512]"], "has 512, larger than the model's 384 dimensions"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, overrides, expected):
    output_dir = tmp_path / "outputs"
    resolved = []
    for override in overrides:
        if "=<" in override:
            key, kind = override.split("=<")
            override = f"{key}={bad_data_file(tmp_path, kind.rstrip('>'))}"
        resolved.append(override)
    if not any(o.startswith("output_dir=") for o in resolved):
        resolved.append(f"output_dir={output_dir}")
    result = run_script("train_embed.py", *resolved, f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr[-2000:]
    assert not output_dir.exists() or not any(output_dir.iterdir())


def test_a_model_inside_a_run_is_scored_with_that_runs_config(tmp_path):
    from embedft.run.files import run_dir_of

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    assert run_dir_of(str(run / "final")) == run
    assert run_dir_of(str(run / "checkpoints" / "checkpoint-8")) == run
    assert run_dir_of(str(tmp_path)) is None


def test_show_config_get_names_an_unknown_key():
    assert run_script("show_config.py", "--get", "training.eval_steps").stdout.strip() == "auto"
    result = run_script("show_config.py", "--get", "training.nope")
    assert result.returncode == 2 and "--get training.nope: no such config key" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_and_infer_without_a_finished_run_say_what_to_do(tmp_path):
    for script in ("eval_embed.py", "infer_embed.py"):
        args = [f"output_dir={tmp_path}"] if script == "eval_embed.py" else ["--set", f"output_dir={tmp_path}", "q"]
        result = run_script(script, *args)
        assert result.returncode == 2
        assert "run 'make train-embed' first" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_prints_the_mapped_pairs_and_split_sizes_and_writes_nothing(tmp_path):
    data = tmp_path / "support_pairs.csv"
    rows = [f'"How do I use feature {i}?","Open the menu and choose feature {i}."' for i in range(30)]
    data.write_text("question,reply\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = run_script(
        "train_embed.py",
        "--dry-run",
        f"dataset_name={data}",
        "query_column=question",
        "answer_column=reply",
        "test_size=5",
        f"output_dir={tmp_path / 'outputs'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "query_column: 'question', answer_column: 'reply'" in result.stdout
    assert "query:  How do I use feature" in result.stdout
    assert "answer: Open the menu and choose feature" in result.stdout
    assert "train_pairs 25, eval_pairs 5" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_the_report_lists_real_test_questions_that_got_better_or_worse(finished_run):
    output_dir, _ = finished_run
    run_dir = (output_dir / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    changes = json.loads((run_dir / "questions.json").read_text())
    counts = metrics["questions"]
    assert counts == {key: changes[key] for key in ("questions", "improved", "unchanged", "worse")}
    assert counts["questions"] == 16 and counts["improved"] + counts["unchanged"] + counts["worse"] == 16
    test_questions = {json.loads(line)["query"] for line in (run_dir / "data" / "eval_triplets.jsonl").open()}
    listed = changes["most_improved"] + changes["most_worsened"]
    assert listed and all(entry["question"] in test_questions for entry in listed)
    assert all(e["rank_after"] < (e["rank_before"] or 101) for e in changes["most_improved"])
    report = (run_dir / "report.md").read_text()
    assert "## Which questions got better or worse" in report and listed[0]["question"] in report
    assert "## How the final model was chosen" in report and "| 1.0" in report


def test_make_setup_picks_the_cpu_wheel_without_a_driver_and_the_drivers_cuda_build_with_one():
    import importlib.util

    spec = importlib.util.spec_from_file_location("torch_spec", ROOT / "scripts" / "torch_spec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    header = "| NVIDIA-SMI 570.86.15    Driver Version: 570.86.15    CUDA Version: {} |"
    assert module.torch_spec(None) == "torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu"
    assert module.torch_spec(header.format("12.8")).endswith("--index-url https://download.pytorch.org/whl/cu128")
    assert module.torch_spec(header.format("13.1")).endswith("/whl/cu130")
    assert module.torch_spec(header.format("12.7")).endswith("/whl/cu126")
    assert module.torch_spec(header.format("11.8")) == "torch==2.13.0"  # PyPI's own build; TORCH_SPEC to choose
    assert "TORCH_SPEC=torch==2.0.0" not in make_dry_run("setup", "VENV=/nonexistent", "TORCH_SPEC=torch==2.0.0")
    assert "install -q torch==2.0.0" in make_dry_run("setup", "VENV=/nonexistent", "TORCH_SPEC=torch==2.0.0")


def test_export_index_writes_a_faiss_index_that_plain_faiss_and_sentence_transformers_query(finished_run, tmp_path):
    import faiss
    from sentence_transformers.sentence_transformer import SentenceTransformer

    output_dir, _ = finished_run
    run_dir = (output_dir / "latest").resolve()
    result = run_script("export_index.py", "--model", str(run_dir), "--output", str(tmp_path / "index"))
    assert result.returncode == 0, result.stderr[-3000:]
    documents = [json.loads(line) for line in (tmp_path / "index" / "documents.jsonl").open()]
    about = json.loads((tmp_path / "index" / "index.json").read_text())
    assert len(documents) == about["documents"] == 503 and about["dimension"] == 384
    # The README's five lines.
    model = SentenceTransformer(str(run_dir / "final"))
    index = faiss.read_index(str(tmp_path / "index" / "index.faiss"))
    question = "How long is a building permit valid?"
    scores, rows = index.search(model.encode_query([question], normalize_embeddings=True), 3)
    inferred = run_script("infer_embed.py", question, "--model", str(run_dir), "--top-k", "3", "--json")
    hits = json.loads(inferred.stdout.strip().splitlines()[-1])["hits"]
    assert [documents[row]["text"] for row in rows[0]] == [hit["text"] for hit in hits]
    again = run_script("export_index.py", "--model", str(run_dir), "--output", str(tmp_path / "index"))
    assert again.returncode == 2 and "already exists and is never overwritten" in again.stderr


def test_make_help_and_the_readme_give_the_same_test_time():
    import re

    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    in_help = re.search(r"^test: .*## .*about (\d+) min", makefile, re.MULTILINE)
    in_readme = re.search(r"`make test` takes about (\d+) minutes", readme)
    assert in_help and in_readme
    assert in_help.group(1) == in_readme.group(1)
