"""Mining again with the model being trained (``mining.rounds``), as ANCE and RocketQA did at scale.

The base miner's negatives get easy for the model after a while; a model trained for a round ranks the pool more
sharply, so its hardest candidates are harder negatives, and also more often unlabelled positives, which the
positive-aware filter (relative_margin 0.05 unless set) keeps out. Every round trains ``num_epochs / rounds``
epochs, so the optimizer steps stay those of one round of ``num_epochs``.

An earlier round keeps its files in ``rounds/round-N/`` of the run folder, laid out like a run folder (checkpoints,
``final`` for the round's model); the rows a round trains on are mined into that round's ``data/``. A resumed run
reuses a round's model and rows when they are there.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from embedft.config.schema import RunConfig
from embedft.data.prepared import PreparedData
from embedft.io import read_json
from embedft.mining.rows import load_triplets
from embedft.models.devices import encoding
from embedft.models.embedding_cache import EmbeddingCache
from embedft.models.loading import load_configured_model
from embedft.run.files import RunFiles
from embedft.run.stages import MinedTriplets, mine_training_rows, train_stage
from embedft.training.checkpoints import last_checkpoint
from embedft.training.history import history_from_checkpoint

if TYPE_CHECKING:
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)

# The relative margin of a later round's mining when mining.relative_margin is not set (NV-Retriever's TopK-PercPos).
REMINING_RELATIVE_MARGIN = 0.05


def round_files(files: RunFiles, number: int) -> RunFiles:
    """The folder of round ``number`` (from 1) inside the run folder, laid out like a run folder."""
    return RunFiles(files.run_dir / "rounds" / f"round-{number}")


def per_round(config: RunConfig) -> RunConfig:
    """``config`` for one round: ``num_epochs / mining.rounds`` epochs (the same config for one round)."""
    if config.mining.rounds == 1:
        return config
    return dataclasses.replace(config, num_epochs=config.num_epochs / config.mining.rounds)


def earlier_round(config: RunConfig) -> RunConfig:
    """An earlier round's config: its share of the epochs, its last step kept and no merge (the last round chooses
    the checkpoint on dev and merges with the base model)."""
    training = dataclasses.replace(config.training, best_on_dev=False)
    return dataclasses.replace(per_round(config), training=training, merge_with_base="off")


def remining(config: RunConfig) -> RunConfig:
    """A later round's mining: the configured filters, positive-aware unless ``mining.relative_margin`` is set."""
    if config.mining.relative_margin is not None:
        return config
    mining = dataclasses.replace(config.mining, relative_margin=REMINING_RELATIVE_MARGIN)
    return dataclasses.replace(config, mining=mining)


def earlier_rounds(
    files: RunFiles,
    data: PreparedData,
    model: SentenceTransformer,
    triplets: MinedTriplets,
    step_triplets: Any,
    step_evaluator: BaseEvaluator,
    config: RunConfig,
    device: str,
    cache: EmbeddingCache,
) -> tuple[SentenceTransformer, MinedTriplets, list[dict[str, Any]]]:
    """Train rounds 1 .. ``mining.rounds - 1``, each followed by mining the training pool again with its model.

    Returns:
        The model after the last earlier round (to train the last round from), the rows the last round trains on,
        and one record per earlier round for ``metrics.json`` ``rounds``.
    """
    records = []
    for number in range(1, config.mining.rounds):
        done, following = round_files(files, number), round_files(files, number + 1)
        done.data_dir.mkdir(parents=True, exist_ok=True)
        if done.final_model.is_dir():
            logger.info("Round %d had finished: using %s", number, done.final_model)
            model = load_configured_model(config, str(done.final_model), device, f"the model of round {number}")
            result = history_from_checkpoint(last_checkpoint(done.checkpoints))
        else:
            logger.info(
                "Round %d of %d: training %.3g epochs", number, config.mining.rounds, per_round(config).num_epochs
            )
            data_of_round = triplets.training_data()
            result = train_stage(
                done, model, data_of_round, step_triplets, step_evaluator, earlier_round(config), device, True
            )
        triplets = mined_again(following, data, model, config, cache, triplets)
        records.append(
            {
                "round": number,
                "global_step": result.global_step,
                "train_loss": result.train_loss,
                "history": result.history,
                "next_round_rows": len(triplets.train),
                "next_round_mining": read_json(following.mining) if following.mining.is_file() else None,
            }
        )
    return model, triplets, records


def mined_again(
    files: RunFiles,
    data: PreparedData,
    model: SentenceTransformer,
    config: RunConfig,
    cache: EmbeddingCache,
    triplets: MinedTriplets,
) -> MinedTriplets:
    """The training rows of the next round, mined with ``model`` over the training pool (:func:`remining`), or read
    back from the round's folder; the held-out triplets stay those of the first mining."""
    files.data_dir.mkdir(parents=True, exist_ok=True)
    if files.triplets("train").is_file():
        pairs = load_triplets(files.unmined_pairs) if files.unmined_pairs.is_file() else None
        train = load_triplets(files.triplets("train"))
    else:
        logger.info("Mining the training pool again with the trained model (%s)", files.run_dir.name)
        with encoding(config.mining.precision, model):
            train, pairs = mine_training_rows(files, data, model, remining(config), cache)
    return dataclasses.replace(triplets, train=train, train_pairs=pairs)
