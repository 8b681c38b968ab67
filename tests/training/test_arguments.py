"""Trainer arguments: intervals that scale with the run, the trainer's own arguments under training:, the overrides a
resumed run takes, and the loggers (the baseline at step 0)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from datasets import Dataset

from embedft.cli.common import load_checked_config
from embedft.config.parsing import load_config, save_config
from embedft.config.schema import RunConfig, TrainingConfig
from embedft.errors import ConfigError
from embedft.run.resume import check_resume_overrides, open_new_run, open_resumed_run
from embedft.training.arguments import build_training_arguments, step_interval, trainer_metric
from embedft.training.checkpoints import last_checkpoint
from embedft.training.trainer import FiniteLossTrainer, train_model
from tests.conftest import ROOT, tiny_word_model

DEFAULT = ROOT / "configs" / "run_embedding_mnrl.yaml"
TEXTS = ["permit", "fee", "roof", "deck"]


def strategy(value) -> str:
    return str(value.value if hasattr(value, "value") else value)


def rows(count: int = 4) -> Dataset:
    """``count`` (query, answer, negative) rows; no text twice in a row."""
    columns = ("query", "answer", "negative")
    return Dataset.from_dict({column: [TEXTS[(i + j) % 4] for i in range(count)] for j, column in enumerate(columns)})


# 1. Eval and save intervals that scale with the run


@pytest.mark.parametrize(("steps", "interval"), [(None, 10), (36, 10), (5_000, 500), (1_000_000, 1000)])
def test_auto_interval_is_a_tenth_of_the_run_within_10_and_1000_steps(steps, interval):
    assert step_interval("auto", steps) == interval


def test_auto_intervals_follow_the_optimizer_steps_and_numbers_pass_as_given(tmp_path):
    config = load_config(DEFAULT)
    assert (config.training.eval_steps, config.training.save_steps) == ("auto", "auto")
    # The default job: ~400 pairs, 3 epochs at 32 -> 39 steps: every 10 steps, as before.
    args = build_training_arguments(config, str(tmp_path), "cpu", True, train_rows=400)
    assert (args.eval_steps, args.save_steps) == (10, 10)
    # 64,000 pairs -> 6,000 steps: every 600; gradient accumulation 4 -> 1,500 optimizer steps: every 150.
    args = build_training_arguments(config, str(tmp_path), "cpu", True, train_rows=64_000)
    assert (args.eval_steps, args.save_steps) == (600, 600)
    accumulated = load_config(DEFAULT, ["training.gradient_accumulation_steps=4"])
    args = build_training_arguments(accumulated, str(tmp_path), "cpu", True, train_rows=64_000)
    assert (args.eval_steps, args.save_steps, args.gradient_accumulation_steps) == (150, 150, 4)
    # max_steps decides when set; a share of the run and an integer reach the trainer unchanged.
    shares = load_config(DEFAULT, ["training.max_steps=3000", "training.eval_steps=0.25", "training.save_steps=7"])
    args = build_training_arguments(shares, str(tmp_path), "cpu", True, train_rows=64_000)
    assert (args.eval_steps, args.save_steps) == (0.25, 7)
    # null: no evaluation inside training, as before.
    args = build_training_arguments(load_config(DEFAULT, ["training.eval_steps=null"]), str(tmp_path), "cpu", True)
    assert strategy(args.eval_strategy) == "no"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            "training.eval_steps=1.5",
            "'training.eval_steps' as a share of the run's optimizer steps must lie in (0, 1)",
        ),
        ("training.save_steps=0", "'training.save_steps' must be at least 1 optimizer step"),
        ("training.save_steps=null", "'training.save_steps' must be an integer or a number or 'auto'"),
        ("training.logging_steps=-2", "'training.logging_steps' must be at least 1 optimizer step"),
    ],
)
def test_bad_intervals_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(DEFAULT, [override])


def test_save_total_limit_never_deletes_the_best_checkpoint(tmp_path):
    # eval_loss with greater_is_better: the best checkpoint is an early one while training lowers the loss, and
    # save_total_limit 1 would delete it if the trainer did not keep it.
    model = tiny_word_model()
    config = RunConfig(
        batch_size=2,
        learning_rate=0.5,
        warmup_ratio=0.0,
        num_epochs=3,
        training=TrainingConfig(
            bf16=False,
            eval_steps=1,
            save_steps=1,
            save_total_limit=1,
            report_to=[],
            trainer_arguments={
                "load_best_model_at_end": True,
                "metric_for_best_model": "eval_loss",
                "greater_is_better": True,
            },
        ),
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    data = rows()
    args = build_training_arguments(config, str(tmp_path / "ckpt"), "cpu", True, model, data.column_names, len(data))
    trainer = FiniteLossTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and Path(best).name != "checkpoint-6", "the loss did not fall: the test proves nothing"
    # Rotation kept the best one all along; at the end (load_best_model_at_end, limit 1) only the best is left.
    assert [p.name for p in (tmp_path / "ckpt").glob("checkpoint-*")] == [Path(best).name]
    assert last_checkpoint(tmp_path / "ckpt") == best


# 2. The trainer's own arguments under training:


def test_trainer_arguments_reach_the_trainer_and_round_trip_through_the_saved_config(tmp_path):
    overrides = [
        "training.gradient_accumulation_steps=2",
        "training.lr_scheduler_type=cosine",
        "training.optim=adamw_torch",
        "training.eval_on_start=true",
        "training.max_grad_norm=0.5",
        "training.load_best_model_at_end=true",
        "training.metric_for_best_model=ndcg@10",
    ]
    config = load_config(DEFAULT, overrides)
    assert config.training.trainer_arguments["gradient_accumulation_steps"] == 2
    save_config(config, tmp_path / "config.yaml")
    saved = (tmp_path / "config.yaml").read_text()
    assert "\n  lr_scheduler_type: cosine\n" in saved  # plain keys of training:, as written
    assert load_config(tmp_path / "config.yaml") == config
    args = build_training_arguments(config, str(tmp_path), "cpu", True, tiny_word_model(), train_rows=400)
    assert args.gradient_accumulation_steps == 2 and args.eval_on_start and args.max_grad_norm == 0.5
    assert strategy(args.lr_scheduler_type) == "cosine" and strategy(args.optim) == "adamw_torch"
    assert args.load_best_model_at_end and args.metric_for_best_model == "ir_steps_cosine_ndcg@10"
    # embedft's own keys keep working beside them.
    assert args.per_device_train_batch_size == 32 and args.warmup_steps == pytest.approx(0.1)


def test_embedft_metric_names_become_the_step_evaluator_keys():
    assert trainer_metric("ndcg@10", None) == "ir_steps_cosine_ndcg@10"
    assert trainer_metric("recall@10_dim256", None) == "ir_steps_dim256_cosine_recall@10"
    assert trainer_metric("triplet_accuracy", None) == "triplet_cosine_accuracy"
    assert trainer_metric("eval_loss", None) == "eval_loss"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["training.gradient_acumulation_steps=2"],
            "unknown config key 'training.gradient_acumulation_steps': did you mean "
            "'training.gradient_accumulation_steps'?",
        ),
        (
            ["lr_scheduler_type=cosine"],
            "unknown config key 'lr_scheduler_type': did you mean 'training.lr_scheduler_type'?",
        ),
        (["training.gradient_accumulation_steps=two"], "'training.gradient_accumulation_steps' must be an integer"),
        (["training.lr_scheduler_type=cosin"], "'training.lr_scheduler_type': the trainer refuses it: cosin is not"),
        (
            ["training.load_best_model_at_end=true", "training.eval_steps=null"],
            "'training.load_best_model_at_end': the trainer refuses it:",
        ),
        (["training.output_dir=x"], "'training.output_dir' is set by embedft from its own options: set output_dir"),
        (["training.per_device_train_batch_size=8"], "set by embedft from its own options: set batch_size"),
        (["training.seed=3"], "'training.seed' is set by embedft from its own options: set the top-level seed"),
        (["training.warmup_steps=100"], "set the top-level warmup_ratio"),
        (["training.batch_sampler=batch_sampler"], "batches never hold a text twice"),
        (["training.prompts=x"], "set use_prompts"),
    ],
)
def test_trainer_argument_errors_are_one_line_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError) as error:
        load_checked_config(DEFAULT, overrides)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_training_warmup_ratio_is_deprecated_for_the_top_level_one(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("warmup_ratio: 0.1\ntraining:\n  warmup_ratio: null\n")  # what earlier runs saved
    with caplog.at_level(logging.WARNING):
        assert load_config(path).warmup_ratio == 0.1
    assert not caplog.records
    path.write_text("warmup_ratio: 0.1\ntraining:\n  warmup_ratio: 0.2\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.warmup_ratio == 0.2  # it overrode the top-level value, and still does
    assert "'training.warmup_ratio' is deprecated" in caplog.text
    assert "warmup_ratio" not in config.to_dict()["training"]


# 3. Overrides of a resumed run


def test_resume_refuses_unsafe_overrides_with_the_reason():
    check_resume_overrides(["batch_size=16", "training.gradient_accumulation_steps=2", "training.eval_steps=5"])
    check_resume_overrides(["training.report_to=[]", "training.logging_steps=1", "output_dir=elsewhere"])
    for key, reason in [
        ("learning_rate", "learning-rate schedule"),
        ("training.lr_scheduler_type", "learning-rate schedule"),
        ("mining.num_negatives", "mined triplets are saved"),
        ("evaluation.max_pool", "baseline and final must be scored alike"),
        ("model_name", "the checkpoint holds the model"),
        ("test_size", "split, mined triplets and baseline"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"'{key}' cannot change on a resumed run: ") + ".*" + reason):
            check_resume_overrides([f"{key}=1"])


def test_resume_records_safe_changes_and_keeps_the_global_batch(tmp_path):
    config = load_config(DEFAULT, [f"output_dir={tmp_path}", "training.report_to=[]"])
    files, lock = open_new_run(config)
    lock.close()
    with pytest.raises(ConfigError, match=r"must stay 32 on a resumed run .*: e\.g\. batch_size=16 "):
        open_resumed_run(str(tmp_path), "latest", ["batch_size=16"])
    files, resumed, lock = open_resumed_run(
        str(tmp_path), "latest", ["batch_size=16", "training.gradient_accumulation_steps=2", "training.eval_steps=5"]
    )
    lock.close()
    assert (resumed.batch_size, resumed.training.eval_steps) == (16, 5)
    assert load_config(files.config) == resumed  # the run's record says what it ran with
    log = files.log.read_text()
    assert "batch_size 32 -> 16" in log and "training.gradient_accumulation_steps None -> 2" in log
    assert "training.eval_steps auto -> 5" in log
    # Unchanged overrides change nothing.
    files, again, lock = open_resumed_run(str(tmp_path), str(files.run_dir), ["batch_size=16"])
    lock.close()
    assert again == resumed


def test_a_resumed_training_may_split_its_batches_differently(tmp_path):
    def config(batch_size: int, accumulation: int, logging_steps: int = 10) -> RunConfig:
        arguments = {"gradient_accumulation_steps": accumulation} if accumulation > 1 else {}
        training = TrainingConfig(
            bf16=False, save_steps=2, logging_steps=logging_steps, report_to=[], trainer_arguments=arguments
        )
        return RunConfig(batch_size=batch_size, num_epochs=2, training=training)

    data, checkpoints = rows(), tmp_path / "ckpt"
    first = train_model(tiny_word_model(), data, None, None, config(2, 1), str(checkpoints), "cpu")
    assert first.global_step == 4 and (checkpoints / "checkpoint-2").is_dir()
    resumed = train_model(
        tiny_word_model(),
        data,
        None,
        None,
        config(1, 2, logging_steps=1),
        str(checkpoints),
        "cpu",
        resume_from_checkpoint=str(checkpoints / "checkpoint-2"),
    )
    assert resumed.global_step == 4  # the same number of optimizer steps of two rows each
    # The interval given with RESUME applies, not the checkpoint's (10: only the first step was logged before).
    assert [entry["step"] for entry in resumed.history if "loss" in entry] == [1, 3, 4]


# 4. Loggers


def test_a_logger_without_its_package_names_the_pip_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(
        ConfigError,
        match=re.escape("'training.report_to' has mlflow, whose package is not installed: pip install mlflow"),
    ):
        load_config(DEFAULT, ["training.report_to=[mlflow]"])
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'"):
        load_config(DEFAULT, ["training.report_to=[tensorbord]"])
    assert load_config(DEFAULT, ["training.report_to=[none]"]).training.report_to == ["none"]


def test_baseline_and_steps_reach_tensorboard_and_mlflow(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # a local file store: no server, no network
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 asks for a database, which mlflow-skinny lacks
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "embedft-test")
    config = load_config(
        None, ["batch_size=2", "num_epochs=1", "training.bf16=false", "training.logging_steps=1",
               "training.report_to=[tensorboard, mlflow]"]
    )  # fmt: skip
    baseline = {"ndcg@10": 0.25, "triplet_accuracy": 0.5}
    result = train_model(
        tiny_word_model(), rows(), None, None, config, str(tmp_path / "ckpt"), "cpu", str(tmp_path / "tb"),
        baseline=baseline,
    )  # fmt: skip
    assert result.global_step == 2
    assert all(entry["step"] > 0 for entry in result.history)  # the baseline is not a step of the history

    events = EventAccumulator(str(next((tmp_path / "tb").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/baseline_ndcg@10")] == [(0, 0.25)]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("embedft-test").experiment_id])
    history = client.get_metric_history(run.info.run_id, "eval_baseline_triplet_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.5)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
