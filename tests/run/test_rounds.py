"""mining.rounds: a first round trains, the training pool is mined again with its model (positive-aware), and the
last round trains on those rows from its weights; a resumed run reuses what a round finished."""

from __future__ import annotations

import numpy as np
import pytest

from embedft.config.schema import MiningConfig, RunConfig, TrainingConfig
from embedft.io import read_json
from embedft.run.rounds import REMINING_RELATIVE_MARGIN, earlier_round, per_round, remining


@pytest.fixture(scope="module")
def two_round_run(module_tmp_path):
    from embedft.run.pipeline import train_embed

    config = RunConfig(
        sample_size=48,
        test_size=12,
        dev_size=8,
        num_epochs=2,
        batch_size=16,
        output_dir=str(module_tmp_path / "outputs"),
        cache_dir=str(module_tmp_path / "cache"),
        mining=MiningConfig(rounds=2),
        training=TrainingConfig(eval_steps=3, logging_steps=1, report_to=[]),
    )
    run_dir, metrics = train_embed(config)
    return config, run_dir, metrics


def test_each_round_trains_its_share_of_the_epochs_and_the_second_mines_again(two_round_run):
    _, run_dir, metrics = two_round_run
    (first,) = metrics["rounds"]
    assert first["round"] == 1 and first["global_step"] == 3  # 48 pairs, batches of 16, one of the two epochs
    assert metrics["training"]["global_step"] == 3
    assert (run_dir / "rounds" / "round-1" / "final").is_dir()  # the first round's model
    mining = read_json(run_dir / "rounds" / "round-2" / "mining.json")
    assert mining["options"]["relative_margin"] == REMINING_RELATIVE_MARGIN  # its sharper false negatives filtered
    assert first["next_round_rows"] == mining["pairs"]["kept"] == metrics["data"]["train_triplets"]


def test_the_second_mining_encodes_with_the_first_rounds_weights(two_round_run):
    from embedft.models.devices import encoding
    from embedft.models.embedding_cache import EmbeddingCache
    from embedft.models.loading import load_configured_model

    config, run_dir, _ = two_round_run
    cache = EmbeddingCache(f"{config.cache_dir}/embedft/embeddings")
    base = load_configured_model(config, config.model_name, "cpu", "model_name")
    trained = load_configured_model(config, str(run_dir / "rounds" / "round-1" / "final"), "cpu", "round 1")
    rows = [line for line in (run_dir / "rounds" / "round-2" / "data" / "train_triplets.jsonl").open()]
    assert len(rows) == read_json(run_dir / "rounds" / "round-2" / "mining.json")["pairs"]["kept"]
    # The training answers were encoded by the round-1 model (its own cache entries), not read from the base's.
    with encoding(config.mining.precision, trained):  # bf16 embeddings are kept apart from fp32 ones
        assert len(cache.store(trained, "document")) >= 48
    answer = "A building permit is needed for new construction."
    assert not np.allclose(base.encode_document([answer]), trained.encode_document([answer]))


def test_round_configs_split_the_epochs_and_leave_choices_to_the_last_round():
    config = RunConfig(num_epochs=3, mining=MiningConfig(rounds=2))
    assert per_round(config).num_epochs == 1.5 and per_round(RunConfig(num_epochs=3)).num_epochs == 3
    first = earlier_round(config)
    assert first.merge_with_base == "off" and not first.training.best_on_dev and first.num_epochs == 1.5
    assert remining(config).mining.relative_margin == REMINING_RELATIVE_MARGIN
    given = RunConfig(mining=MiningConfig(rounds=2, relative_margin=0.1))
    assert remining(given).mining.relative_margin == 0.1
