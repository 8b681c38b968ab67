"""Training: a real MiniLM trained for a few steps; the loss falls and the saved model loads back."""

from __future__ import annotations

import numpy as np
import pytest

from embedft.config import MiningConfig, RunConfig, TrainingConfig
from embedft.evaluation import build_evaluator, evaluate, standard_metrics
from embedft.mining import mine_evaluation_triplets, mine_training_triplets
from embedft.models import load_model
from embedft.training import build_training_arguments, history_from_log, save_model_atomically, train_model


def test_standard_metric_names():
    raw = {"eval_triplet_cosine_accuracy": 0.5, "triplet_cosine_accuracy": 0.7, "eval_loss": 1.0, "eval_runtime": 3}
    assert standard_metrics(raw) == {"triplet_accuracy": 0.7}


def test_arguments_use_no_duplicates_sampler_and_fp32_on_cpu(tmp_path):
    config = RunConfig(training=TrainingConfig(bf16=True, eval_steps=3))
    args = build_training_arguments(config, str(tmp_path), "cpu", has_evaluator=True)
    assert str(args.batch_sampler.value if hasattr(args.batch_sampler, "value") else args.batch_sampler) == (
        "no_duplicates"
    )
    assert not args.bf16 and not args.fp16
    assert args.eval_steps == 3 and args.warmup_steps == pytest.approx(0.1)
    assert str(args.eval_strategy.value if hasattr(args.eval_strategy, "value") else args.eval_strategy) == "steps"

    # eval_steps null: evaluation only before and after training, never inside it.
    config = RunConfig(training=TrainingConfig(eval_steps=None))
    args = build_training_arguments(config, str(tmp_path), "cpu", has_evaluator=True)
    assert str(args.eval_strategy.value if hasattr(args.eval_strategy, "value") else args.eval_strategy) == "no"


def test_history_merges_train_and_eval_records():
    log = [
        {"loss": 1.0, "learning_rate": 1e-5, "epoch": 0.5, "step": 1},
        {"eval_loss": 0.9, "eval_triplet_cosine_accuracy": 0.6, "epoch": 0.5, "step": 1},
        {"train_runtime": 3.0, "step": 2},
    ]
    assert history_from_log(log) == [
        {"step": 1, "epoch": 0.5, "loss": 1.0, "learning_rate": 1e-5, "eval_loss": 0.9, "triplet_accuracy": 0.6}
    ]


def test_few_steps_of_mnrl_lower_the_loss_and_save_a_loadable_model(small_splits, minilm, tmp_path):
    train_triplets = mine_training_triplets(small_splits["train"], minilm, MiningConfig(), seed=1)
    eval_triplets = mine_evaluation_triplets(small_splits["test"], list(small_splits["train"]["answer"]), minilm, 32)
    model = load_model("packaged:all-MiniLM-L6-v2", "cpu")
    before = model.encode(["How long does a building permit take?"])
    config = RunConfig(
        num_epochs=3,
        batch_size=16,
        learning_rate=5e-5,
        training=TrainingConfig(bf16=False, eval_steps=3, save_steps=6, logging_steps=1, report_to=[]),
    )
    evaluator = build_evaluator(eval_triplets, None, batch_size=32)
    result = train_model(model, train_triplets, eval_triplets, evaluator, config, str(tmp_path / "ckpt"), "cpu")

    losses = [entry["loss"] for entry in result.history if "loss" in entry]
    assert len(losses) >= 6
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert any("triplet_accuracy" in entry for entry in result.history)
    assert (tmp_path / "ckpt" / "checkpoint-6").is_dir()

    save_model_atomically(model, tmp_path / "final")
    reloaded = load_model(str(tmp_path / "final"), "cpu")
    after = reloaded.encode(["How long does a building permit take?"])
    assert not np.allclose(before, after)
    assert np.allclose(after, model.encode(["How long does a building permit take?"]), atol=1e-5)
    assert 0 <= evaluate(reloaded, evaluator)["triplet_accuracy"] <= 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".final")]
