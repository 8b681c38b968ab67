"""merge_with_base: the interpolation of the trained and base weights, and the weight chosen on dev scores."""

from __future__ import annotations

import pytest
import torch

from embedft.models.loading import load_model
from embedft.training.merging import AUTO_WEIGHTS, choose_merge, merge_setting, merged_model
from tests.conftest import MINILM


@pytest.fixture(scope="module")
def base_and_trained():
    """The packaged MiniLM and a copy of it with every weight moved, as a training would."""
    base, trained = load_model(MINILM, "cpu"), load_model(MINILM, "cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    return base, trained


def weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items() if tensor.is_floating_point()}


def test_the_merge_at_1_is_the_trained_model_and_at_0_the_base(base_and_trained):
    base, trained = base_and_trained
    assert merged_model(trained, base, 1.0) is trained
    at_zero, base_weights = weights(merged_model(trained, base, 0.0)), weights(base)
    assert at_zero.keys() == base_weights.keys()
    assert all(torch.allclose(at_zero[name], base_weights[name], atol=1e-6) for name in base_weights)


def test_the_merge_interpolates_every_weight(base_and_trained):
    base, trained = base_and_trained
    merged = merged_model(trained, base, 0.7)
    expected = {name: 0.3 * b + 0.7 * t for (name, b), t in zip(weights(base).items(), weights(trained).values())}
    assert all(torch.allclose(weights(merged)[name], value, atol=1e-6) for name, value in expected.items())
    assert merged.prompts == trained.prompts and merged.max_seq_length == trained.max_seq_length
    text = "How long is a building permit valid?"
    between = torch.nn.functional.cosine_similarity
    assert between(merged.encode(text, convert_to_tensor=True), trained.encode(text, convert_to_tensor=True), 0) < 1


def test_auto_keeps_the_weight_with_the_best_dev_score(base_and_trained):
    base, trained = base_and_trained
    dev_curve = dict(zip(AUTO_WEIGHTS, (0.60, 0.72, 0.70, 0.65)))  # a = 0.7 is best on the dev questions
    trained_weights = weights(trained)

    def score_dev(model) -> dict[str, float]:
        # Which weight this model is: its distance from the base, relative to the trained model's.
        name = "0.model.embeddings.word_embeddings.weight"
        share = float(
            (weights(model)[name] - weights(base)[name]).norm() / (trained_weights[name] - weights(base)[name]).norm()
        )
        return {"ndcg@10": dev_curve[min(AUTO_WEIGHTS, key=lambda a: abs(a - share))]}

    model, choice = choose_merge(trained, lambda: base, score_dev, "auto")
    assert choice.weight == 0.7 and choice.scores == {str(a): v for a, v in dev_curve.items()}
    assert choice.to_dict()["dev_scores"]["0.7"] == 0.72 and choice.metric == "ndcg@10"
    assert model is not trained and score_dev(model)["ndcg@10"] == 0.72


def test_auto_without_dev_questions_and_off_keep_the_trained_model(base_and_trained):
    base, trained = base_and_trained
    for setting, dev in (("auto", None), ("off", lambda model: {"ndcg@10": 1.0}), (False, None)):
        model, choice = choose_merge(trained, lambda: base, dev, setting)
        assert model is trained and choice.weight == 1.0 and not choice.scores
    model, choice = choose_merge(trained, lambda: base, None, 0.5)
    assert choice.weight == 0.5 and choice.setting == "0.5" and model is not trained


def test_the_setting_reads_a_bare_yaml_off_as_off():
    assert merge_setting(False) == "off" and merge_setting("off") == "off" and merge_setting("auto") == "auto"
    assert merge_setting(0.85) == 0.85 and merge_setting(1) == 1.0
