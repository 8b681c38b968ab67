"""Selectable training losses: each one trains a real MiniLM (its loss falls), the gist losses get a frozen guide,
and a loss that cannot work is refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from embedft.config.parsing import load_config
from embedft.config.schema import RunConfig, TrainingConfig
from embedft.errors import ConfigError
from embedft.models.loading import load_model
from embedft.training.losses import build_loss, load_guide
from embedft.training.trainer import train_model
from tests.conftest import MINILM, tiny_word_model

ANIMALS = ("otter", "falcon", "badger", "heron", "lynx", "walrus", "gecko", "bison")
PLACES = ("the red barn", "the north tower", "the cellar", "the glasshouse", "the old mill", "the boathouse")
PLACES += ("the attic", "the chapel")


def arbitrary_rows(negatives: int = 1) -> Dataset:
    """8 rows whose answers are an arbitrary pairing (no model knows it beforehand, so the loss starts high and
    can only fall by learning it); every text is unique, so the no-duplicates sampler keeps all 8 in one batch."""
    columns = {
        "query": [f"Where does the {animal} sleep?" for animal in ANIMALS],
        "answer": [f"It sleeps in {PLACES[(3 * i) % 8]}." for i in range(8)],
    }
    for k in range(1, negatives + 1):
        name = "negative" if negatives == 1 else f"negative_{k}"
        columns[name] = [f"It never goes near {PLACES[(3 * i + k) % 8]} (#{k})." for i in range(8)]
    return Dataset.from_dict(columns)


def loss_config(loss: str, steps: int = 6, **training) -> RunConfig:
    """Every step trains on the same batch of 8 rows, at a learning rate that moves MiniLM in a few steps."""
    return RunConfig(
        batch_size=8,
        learning_rate=1e-4,
        warmup_ratio=0.0,
        seed=5,
        training=TrainingConfig(
            loss=loss,
            mini_batch_size=4,  # the cached losses split the batch of 8 in two
            max_steps=steps,
            logging_steps=1,
            save_steps=1000,
            eval_steps=None,
            bf16=False,
            report_to=[],
            **training,
        ),
    )


def train(config: RunConfig, rows: Dataset, tmp_path) -> list[float]:
    """Train a fresh MiniLM as the pipeline does (guide included); return the loss of every step."""
    model = load_model(MINILM, "cpu")
    guide = load_guide(config, "cpu")
    result = train_model(model, rows, None, None, config, str(tmp_path / "ckpt"), "cpu", guide=guide)
    assert result.global_step == config.training.max_steps
    return [entry["loss"] for entry in result.history if "loss" in entry]


@pytest.mark.parametrize(
    ("loss", "training"),
    [
        ("mnrl", {}),
        ("cached_mnrl", {}),
        ("gist", {}),
        ("cached_gist", {}),
        ("symmetric", {}),
        ("mnrl", {"matryoshka_dims": [256, 64]}),
        ("mnrl", {"directions": ["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"]}),
        ("cached_mnrl", {"directions": ["query_to_doc", "doc_to_query"], "partition_mode": "per_direction"}),
        ("mnrl", {"hardness_mode": "in_batch_negatives", "hardness_strength": 9.0}),
        ("mnrl", {"hardness_mode": "hard_negatives", "hardness_strength": 5.0}),
        ("cached_mnrl", {"hardness_mode": "all_negatives", "hardness_strength": 5.0}),
    ],
    ids=[
        "mnrl",
        "cached_mnrl",
        "gist",
        "cached_gist",
        "symmetric",
        "mnrl-matryoshka",
        "mnrl-gte-four-directions",
        "cached_mnrl-per-direction",
        "mnrl-hardness-in-batch",
        "mnrl-hardness-hard-negatives",
        "cached_mnrl-hardness-all",
    ],
)
def test_each_loss_lowers_the_training_loss(loss, training, tmp_path):
    losses = train(loss_config(loss, **training), arbitrary_rows(), tmp_path)
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2])


def test_cached_gist_takes_several_negatives_per_row(tmp_path):
    losses = train(loss_config("cached_gist", steps=4), arbitrary_rows(negatives=2), tmp_path)
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_losses_are_built_as_configured(minilm):
    from sentence_transformers.sentence_transformer import losses

    config = loss_config("mnrl")
    mnrl = build_loss(minilm, config)
    assert type(mnrl) is losses.MultipleNegativesRankingLoss and mnrl.scale == pytest.approx(20.0)
    cached = build_loss(minilm, loss_config("cached_mnrl"))
    assert type(cached) is losses.CachedMultipleNegativesRankingLoss and cached.mini_batch_size == 4
    symmetric = build_loss(minilm, loss_config("symmetric"))
    assert symmetric.directions == ("query_to_doc", "doc_to_query") and symmetric.partition_mode == "per_direction"
    gist = build_loss(minilm, loss_config("gist"), guide=minilm)
    assert type(gist) is losses.GISTEmbedLoss and gist.temperature == pytest.approx(0.05)
    # The model's full size is always trained along with the truncated ones.
    matryoshka = build_loss(minilm, loss_config("cached_gist", matryoshka_dims=[64, 256]), guide=minilm)
    assert type(matryoshka) is losses.MatryoshkaLoss and matryoshka.matryoshka_dims == (384, 256, 64)
    assert type(matryoshka.loss) is losses.CachedGISTEmbedLoss


def test_guide_is_a_frozen_copy_of_the_base_model_or_the_mining_model(minilm, tmp_path):
    assert load_guide(loss_config("mnrl"), "cpu") is None  # only the gist losses have a guide

    base = load_guide(loss_config("gist"), "cpu")
    assert base is not minilm and base.max_seq_length == minilm.max_seq_length
    assert not base.training and not any(p.requires_grad for p in base.parameters())

    # A mining model with a shorter window: GISTEmbedLoss re-tokenizes the texts for it.
    mining = load_model(MINILM, "cpu", max_seq_length=24)
    mining.save(str(tmp_path / "miner"))
    config = loss_config("gist", steps=2, guide_model="mining")
    config.mining_model_name = str(tmp_path / "miner")
    guide = load_guide(config, "cpu")
    assert guide.max_seq_length == 24 and str(guide.device) == "cpu"
    assert not guide.training and not any(p.requires_grad for p in guide.parameters())
    model = load_model(MINILM, "cpu")
    assert build_loss(model, config, guide).must_retokenize
    before = [p.detach().clone() for p in guide.parameters()]
    train_model(model, arbitrary_rows(), None, None, config, str(tmp_path / "ckpt"), "cpu", guide=guide)
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters()))  # the guide never trains


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_static_mining_model_cannot_guide(tmp_path):
    tiny_word_model().save(str(tmp_path / "static"))
    config = loss_config("gist", guide_model="mining")
    config.mining_model_name = str(tmp_path / "static")
    with pytest.raises(ConfigError) as error:
        load_guide(config, "cpu")
    assert "static embedding model: set training.guide_model: base" in one_line(error)


def test_a_loss_the_model_or_data_cannot_take_is_refused_in_one_line(minilm):
    with pytest.raises(ConfigError) as error:  # GradCache cannot split a static model's flat token stream
        build_loss(tiny_word_model(), loss_config("cached_mnrl"))
    assert one_line(error).startswith("'training.loss' cached_mnrl cannot train this model: ")
    with pytest.raises(ConfigError) as error:
        build_loss(minilm, loss_config("gist"), guide=minilm, columns=["query", "answer", "negative_1", "negative_2"])
    assert "use cached_gist" in one_line(error)
    with pytest.raises(ConfigError) as error:
        build_loss(minilm, loss_config("mnrl", matryoshka_dims=[1024, 64]))
    assert one_line(error) == "'training.matryoshka_dims' has 1024, larger than the model's 384 dimensions"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["training.mini_batch_size=0"], "'training.mini_batch_size' must be greater than 0, got 0"),
        (["training.matryoshka_dims=[256, 0]"], "'training.matryoshka_dims' must hold positive sizes, got 0"),
        (["training.loss=infonce"], "'training.loss' must be 'mnrl' or 'cached_mnrl' or 'gist' or 'cached_gist' or"),
        (["training.guide_model=teacher"], "'training.guide_model' must be 'base' or 'mining', got 'teacher'"),
        (["training.loss=gist", "mining.num_negatives=2"], "'training.loss' gist takes one negative per row"),
        (
            ["training.loss=cached_gist", "training.guide_model=mining", f"mining_model_name=static:{MINILM}"],
            "'training.loss' cached_gist needs a guide with a transformers tokenizer, and mining_model_name",
        ),
    ],
)
def test_impossible_loss_settings_are_one_line_config_errors(overrides, expected):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert one_line(error).startswith(expected)


def test_the_contrast_options_reach_the_loss(minilm):
    training = {"directions": ["query_to_doc", "query_to_query"], "hardness_mode": "hard_negatives"}
    loss = build_loss(minilm, loss_config("mnrl", hardness_strength=5.0, **training))
    assert loss.directions == ("query_to_doc", "query_to_query") and loss.partition_mode == "joint"
    assert loss.hardness_mode == "hard_negatives" and loss.hardness_strength == 5.0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["training.directions=[doc_to_query]"], "must include query_to_doc"),
        (["training.loss=gist", "training.directions=[query_to_doc,doc_to_query]"], "only apply to training.loss"),
        (
            ["training.directions=[query_to_doc,doc_to_doc]", "training.partition_mode=per_direction"],
            "per_direction cannot normalise",
        ),
        (["training.hardness_strength=5"], "hardness_mode is null"),
        (["training.hardness_mode=hard_negatives", "training.hardness_strength=-1"], "must be 0 or more"),
        (["training.directions=[query_to_doc,sideways]"], "'training.directions' must be"),
    ],
)
def test_impossible_contrast_options_are_one_line_config_errors(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, overrides)
