"""Scoring a saved model on a run's test questions (``make eval-embed``), with the evaluator of the run's own final
score, so the run's ``final`` is reproduced."""

from __future__ import annotations

import logging
from pathlib import Path

from embedft.config.schema import RunConfig
from embedft.data.prepared import prepare_data
from embedft.evaluation.evaluators import evaluate
from embedft.evaluation.sets import evaluator_for
from embedft.mining.held_out import mine_evaluation_triplets
from embedft.mining.rows import load_triplets
from embedft.models.devices import encoding, resolve_device
from embedft.models.loading import load_configured_model
from embedft.run.files import RunFiles

logger = logging.getLogger(__name__)


def score_saved_model(config: RunConfig, model_path: str, run_dir: Path | None) -> tuple[dict[str, float], int]:
    """The metrics of the model at ``model_path`` on ``config``'s test questions, and the number of evaluation
    triplets.

    The triplets are the run's own when ``run_dir`` holds them for this split; otherwise they are mined again with
    the config's mining model (a model from no run, or a changed config).
    """
    device = resolve_device(config.device, for_training=False)
    model = load_configured_model(config, model_path, device, "MODEL")
    data = prepare_data(config)
    files = RunFiles(run_dir) if run_dir is not None else None
    if files is not None and files.has_split(data.fingerprint):
        logger.info("Using the run's evaluation triplets: %s", files.triplets("test"))
        eval_triplets = load_triplets(files.triplets("test"))
    else:
        mining_device = resolve_device(config.mining.device, "mining.device", for_training=False)
        mining_model = load_configured_model(config, config.mining_model_name, mining_device, "mining_model_name")
        with encoding(config.mining.precision, mining_model):
            eval_triplets = mine_evaluation_triplets(
                data.splits["test"], data.corpus, mining_model, config.mining.batch_size, other_pairs=data.all_pairs
            )
    evaluator = evaluator_for(config, data, eval_triplets, model.get_embedding_dimension())
    with encoding(config.evaluation.precision, model):  # as the run scored its baseline and final
        return evaluate(model, evaluator), len(eval_triplets)
