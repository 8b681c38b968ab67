"""Training: a real MiniLM trained for a few steps; the loss falls and the saved model loads back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from embedft.config.schema import MiningConfig, RunConfig, TrainingConfig
from embedft.evaluation.evaluators import build_evaluator, evaluate
from embedft.mining.held_out import mine_evaluation_triplets
from embedft.mining.training_set import mine_training_triplets
from embedft.models.loading import load_model
from embedft.training.arguments import build_training_arguments
from embedft.training.checkpoints import save_model_atomically
from embedft.training.history import history_from_log
from embedft.training.trainer import FiniteLossTrainer, NonFiniteLoss, train_model
from tests.conftest import tiny_word_model


def tiny_trainer(model, tmp_path, columns=("query", "answer", "negative"), scale: float = 20.0, **training):
    """The project's trainer on a 4-row dataset, built as train_model builds it."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    texts = ["permit", "fee", "roof", "deck"]  # row i, column j holds text i + j: no text twice in a row
    data = Dataset.from_dict({column: [texts[(i + j) % 4] for i in range(4)] for j, column in enumerate(columns)})
    config = RunConfig(batch_size=2, training=TrainingConfig(report_to=[], **training))
    args = build_training_arguments(config, str(tmp_path / "ckpt"), "cpu", False, model, columns=list(columns))
    loss = MultipleNegativesRankingLoss(model, scale=scale)
    return FiniteLossTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, loss=loss)


def trained_embeddings(trainer, row: dict[str, str]) -> dict[str, np.ndarray]:
    """Each column's embedding exactly as the trainer computes it: its collator (prompts, routes), its feature
    split, then the model forward the loss runs."""
    import torch

    batch = trainer.data_collator([row])
    features, _ = trainer.collect_features(batch)
    with torch.no_grad():
        return {column: trainer.model(f)["sentence_embedding"].numpy() for column, f in zip(row, features)}


def test_arguments_use_no_duplicates_sampler_and_bf16_only_where_the_cpu_has_it(tmp_path):
    from embedft.models.devices import cpu_has_bf16

    config = RunConfig(training=TrainingConfig(bf16=True, eval_steps=3))
    args = build_training_arguments(config, str(tmp_path), "cpu", has_evaluator=True)
    assert str(args.batch_sampler.value if hasattr(args.batch_sampler, "value") else args.batch_sampler) == (
        "no_duplicates"
    )
    assert args.bf16 == cpu_has_bf16() and not args.fp16
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
    assert evaluate(reloaded, evaluator) == evaluate(model, evaluator)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".final")]


@pytest.mark.parametrize("source", ["assigned", "saved"])
def test_trainer_encodes_columns_as_encode_query_and_encode_document(source, tmp_path):
    model = tiny_word_model()
    model.prompts = {"query": "query: ", "passage": "passage: "}  # e5 style: no "document" prompt
    if source == "saved":  # the prompts come from the saved config, through the project's loader
        model.save(str(tmp_path / "e5"))
        model = load_model(str(tmp_path / "e5"), "cpu")
    trainer = tiny_trainer(model, tmp_path)
    assert trainer.args.prompts == {"query": "query: ", "answer": "passage: ", "negative": "passage: "}
    seen = trained_embeddings(trainer, {"query": "permit", "answer": "fee", "negative": "roof"})
    assert np.allclose(seen["query"], model.encode_query(["permit"]))
    assert np.allclose(seen["answer"], model.encode_document(["fee"]))
    assert np.allclose(seen["negative"], model.encode_document(["roof"]))
    assert not np.allclose(seen["answer"], model.encode(["fee"]))  # the passage prompt is really applied


def test_router_model_routes_each_column_as_encode_query_and_encode_document(tmp_path):
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router

    router = Router.for_query_document([tiny_word_model(1)[0]], [tiny_word_model(2)[0]])
    model = SentenceTransformer(modules=[router], device="cpu")
    columns = ("query", "answer", "negative_1", "negative_2")
    trainer = tiny_trainer(model, tmp_path, columns)  # the trainer refuses a Router model without a mapping
    assert trainer.args.router_mapping == {
        "query": "query",
        "answer": "document",
        "negative_1": "document",
        "negative_2": "document",
    }
    seen = trained_embeddings(
        trainer, {"query": "permit", "answer": "fee", "negative_1": "roof", "negative_2": "deck"}
    )
    assert np.allclose(seen["query"], model.encode_query(["permit"]))
    assert not np.allclose(seen["query"], model.encode_document(["permit"]))  # the two routes really differ
    for column, text in (("answer", "fee"), ("negative_1", "roof"), ("negative_2", "deck")):
        assert np.allclose(seen[column], model.encode_document([text]))
    # Models without a Router get no mapping.
    assert build_training_arguments(RunConfig(), str(tmp_path), "cpu", False, tiny_word_model()).router_mapping == {}


def test_only_a_non_finite_training_loss_stops_the_run(tmp_path):
    # An infinite scale makes every MNRL loss non-finite, as an fp16 overflow would.
    trainer = tiny_trainer(tiny_word_model(), tmp_path, scale=math.inf, save_steps=100)
    metrics = trainer.evaluate()  # the evaluation loss goes through compute_loss with the model in eval mode
    assert not math.isfinite(metrics["eval_loss"])
    with pytest.raises(NonFiniteLoss) as raised:
        trainer.train()
    assert raised.value.step == 1
    assert not list((tmp_path / "ckpt").glob("checkpoint-*"))


class ScriptedDevCurve(BaseEvaluator):
    """A dev evaluator whose NDCG@10 follows a hand-made curve, one value per evaluation, as the step evaluator
    names it (``ir_steps_cosine_ndcg@10``)."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__()
        self.curve = list(curve)
        self.greater_is_better = True
        self.primary_metric = "ir_steps_cosine_ndcg@10"

    def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]:
        return {"ir_steps_cosine_ndcg@10": self.curve.pop(0)}


def test_the_final_model_is_the_checkpoint_with_the_best_dev_score(tmp_path):
    from sentence_transformers.sentence_transformer import SentenceTransformer

    rows = Dataset.from_dict(
        {
            "query": ["permit fee", "roof", "deck"],
            "answer": ["fee", "deck permit", "roof fee"],
            "negative": ["roof", "fee", "permit"],
        }
    )
    model = tiny_word_model()
    training = TrainingConfig(report_to=[], eval_steps=2, save_steps=2, max_steps=6, logging_steps=1, bf16=False)
    config = RunConfig(batch_size=3, learning_rate=0.05, warmup_ratio=0.0, training=training)
    result = train_model(
        model, rows, None, ScriptedDevCurve([0.5, 0.9, 0.6]), config, str(tmp_path / "ckpt"), "cpu", scores_dev=True
    )
    assert result.global_step == 6 and result.chosen_step == 4  # dev NDCG@10 0.5, 0.9, 0.6 at steps 2, 4, 6
    assert [entry["ndcg@10"] for entry in result.history if "ndcg@10" in entry] == [0.5, 0.9, 0.6]
    texts = ["permit fee", "roof deck", "fee"]
    now = model.encode(texts)
    assert np.allclose(SentenceTransformer(str(tmp_path / "ckpt" / "checkpoint-4")).encode(texts), now)
    assert not np.allclose(SentenceTransformer(str(tmp_path / "ckpt" / "checkpoint-6")).encode(texts), now)


def test_without_dev_questions_or_with_best_on_dev_off_the_last_step_stays(tmp_path):
    for scores_dev, best_on_dev in ((False, True), (True, False)):
        training = TrainingConfig(report_to=[], eval_steps=2, save_steps=3, best_on_dev=best_on_dev)
        args = build_training_arguments(
            RunConfig(training=training), str(tmp_path), "cpu", True, scores_dev=scores_dev
        )
        assert not args.load_best_model_at_end and args.save_steps == 3
    training = TrainingConfig(report_to=[], eval_steps=2, save_steps=3)
    args = build_training_arguments(RunConfig(training=training), str(tmp_path), "cpu", True, scores_dev=True)
    assert args.load_best_model_at_end and args.metric_for_best_model == "ir_steps_cosine_ndcg@10"
    assert args.save_steps == 2  # a checkpoint at every evaluation, so the best one exists
