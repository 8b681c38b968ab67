"""The stages of a run that write to its folder: mining, baseline, training, and the files that finish it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.columns import ANSWER, QUERY
from embedft.config.schema import RunConfig
from embedft.data.prepared import PreparedData
from embedft.errors import OutputError
from embedft.evaluation.changes import rankings_from_json, rankings_to_json
from embedft.evaluation.evaluators import PoolSequentialEvaluator, QueryRanking, evaluate
from embedft.evaluation.sets import EvaluationSet, evaluator_for_set, pair_similarities
from embedft.io import read_json, write_json
from embedft.mining.given import given_negatives_training_set, read_given_negatives
from embedft.mining.held_out import mine_evaluation_triplets
from embedft.mining.rows import load_triplets, save_triplets
from embedft.mining.training_set import mine_training_set
from embedft.models.devices import encoding
from embedft.models.embedding_cache import EmbeddingCache
from embedft.models.loading import load_configured_model
from embedft.run.files import RunFiles, mark_complete, point_latest
from embedft.run.modelcard import describe_model
from embedft.run.report import write_report
from embedft.training import distributed
from embedft.training.checkpoints import last_checkpoint, save_model_atomically
from embedft.training.history import TrainingResult, history_from_checkpoint
from embedft.training.losses import load_guide
from embedft.training.merging import choose_merge
from embedft.training.trainer import train_model

if TYPE_CHECKING:
    from collections.abc import Callable

    from datasets import Dataset, DatasetDict
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class MinedTriplets:
    """The mining stage's output: training triplets, and evaluation triplets of the test (and dev) questions."""

    train: Dataset
    test: Dataset
    dev: Dataset | None = None
    train_pairs: Dataset | None = None  # pairs kept without negatives (mining.unmined_pairs: in_batch)

    def training_data(self) -> Dataset | DatasetDict:
        """What the trainer reads (:func:`training_data`)."""
        return training_data(self.train, self.train_pairs)


def training_data(train: Dataset, pairs: Dataset | None) -> Dataset | DatasetDict:
    """What the trainer reads: the training rows, and with pairs kept without negatives a second dataset of them
    under the same loss (each batch then comes from one of the two, so the pairs' only negatives are the other
    answers in their batch)."""
    from datasets import DatasetDict

    if pairs is None or len(pairs) == 0:
        return train
    return DatasetDict({"mined": train, "in_batch": pairs})


def mine_stage(
    files: RunFiles,
    data: PreparedData,
    mining_model: SentenceTransformer,
    config: RunConfig,
    cache: EmbeddingCache,
) -> MinedTriplets:
    """Mine (or reuse the run's) triplets: training negatives from the training pool only, evaluation negatives
    (test, and dev when set) from the whole pool. Texts are encoded once, through ``cache``.

    Negatives the data brought are used as ``mining.given_negatives`` says (never a positive of the question or a
    held-out answer), in rows of the same layout as mined ones; evaluation negatives are always mined."""
    reused = reused_triplets(files, data, config)
    if reused is not None:
        return reused
    write_json(files.split, data.fingerprint)
    mined = mine_held_out(files, data, mining_model, config, cache)
    if config.mining.num_negatives == 0:
        # In-batch negatives only: the loss takes the other answers of each batch; nothing to mine for training.
        mined["train"] = data.splits["train"].select_columns([QUERY, ANSWER])
        save_triplets(mined["train"], files.triplets("train"))
        logger.info(
            "mining.num_negatives is 0: training on (query, answer) pairs with in-batch negatives only%s",
            " (the data's given negatives are not used)" if data.has_given_negatives else "",
        )
        return MinedTriplets(**mined)
    mined["train"], mined["train_pairs"] = mine_training_rows(files, data, mining_model, config, cache)
    return MinedTriplets(**mined)


def reused_triplets(files: RunFiles, data: PreparedData, config: RunConfig) -> MinedTriplets | None:
    """The run's cached triplets when it has all of them, None when mining must run.

    Raises:
        OutputError: the cached triplets were made from another split than the config gives now.
    """
    splits = [name for name in ("train", "test", "dev") if name in data.splits]
    if not (files.split.is_file() or files.triplets("train").is_file()):
        return None
    if not files.has_split(data.fingerprint):
        raise OutputError(
            f"run {files.run_dir} was made with another split than its config gives now (changed data, or an "
            "older embedft): its cached triplets and baseline do not apply; start a new run"
        )
    if not all(files.triplets(name).is_file() for name in splits):
        return None
    logger.info("Reusing the mined triplets in %s", files.data_dir)
    if not files.mining.is_file() and config.mining.num_negatives > 0:  # stopped before the diagnostics
        logger.warning("%s is missing: this run's mining diagnostics were not recorded", files.mining)
    pairs = load_triplets(files.unmined_pairs) if files.unmined_pairs.is_file() else None
    return MinedTriplets(**{name: load_triplets(files.triplets(name)) for name in splits}, train_pairs=pairs)


def mine_held_out(
    files: RunFiles, data: PreparedData, mining_model: SentenceTransformer, config: RunConfig, cache: EmbeddingCache
) -> dict[str, Dataset]:
    """The evaluation triplets of the test (and dev) questions, saved in the run folder. Test and dev questions are
    mined in one call, so the whole pool is encoded once for both."""
    from datasets import concatenate_datasets

    held_out = [name for name in ("test", "dev") if name in data.splits]
    together = mine_evaluation_triplets(
        concatenate_datasets([data.splits[name].select_columns([QUERY, ANSWER]) for name in held_out]),
        data.corpus,
        mining_model,
        config.mining.batch_size,
        other_pairs=data.all_pairs,
        cache=cache,
        exact_search_limit=config.mining.exact_search_limit,
    )
    mined = {}
    for name in held_out:
        questions = set(data.splits[name][QUERY])
        mined[name] = together.select([i for i, query in enumerate(together[QUERY]) if query in questions])
        save_triplets(mined[name], files.triplets(name))
    return mined


def mine_training_rows(
    files: RunFiles, data: PreparedData, mining_model: SentenceTransformer, config: RunConfig, cache: EmbeddingCache
) -> tuple[Dataset, Dataset | None]:
    """The training rows, mined or from the data's own negatives (``mining.given_negatives``), written to the run
    folder with their ``mining.json``; and the pairs kept without negatives (``mining.unmined_pairs: in_batch``)."""
    train = data.splits["train"]
    # Both search the whole training pool (training answers and corpus_file) and write the rows to the run folder.
    pool_and_path = {"extra_documents": data.training_documents, "cache": cache, "path": files.triplets("train")}
    if data.has_given_negatives and config.mining.given_negatives != "ignore":
        given = read_given_negatives(train, data.all_pairs, data.protected_answers)
        training = given_negatives_training_set(
            train, given, mining_model, config.mining, config.seed, pairs_path=files.unmined_pairs, **pool_and_path
        )
    else:
        if data.has_given_negatives:
            logger.info("mining.given_negatives is ignore: mining every training pair, the data's negatives unused")
        training = mine_training_set(
            train,
            mining_model,
            config.mining,
            config.seed,
            texts=data.corpus,
            pairs_path=files.unmined_pairs,
            **pool_and_path,
        )
    if files.mining.is_file():  # only when the cached triplets were removed by hand: say what is replaced
        logger.warning("Replacing %s with the diagnostics of the triplets mined now", files.mining)
    write_json(files.mining, training.diagnostics.to_dict())
    return training.triplets, training.pairs


@dataclass
class Scores:
    """One model's scores on the test questions: the metrics, the query-positive/negative similarities the report
    histograms, and each question's ranking (for the questions that got better or worse)."""

    metrics: dict[str, float]
    similarities: dict[str, list[float]]
    rankings: dict[str, QueryRanking]


def score(
    model: SentenceTransformer,
    evaluator: BaseEvaluator,
    triplets: Dataset,
    config: RunConfig,
    cache: EmbeddingCache | None = None,
) -> Scores:
    """The evaluator's metrics, the similarities (their answers read from ``cache``, where the evaluation has just
    put the pool) and the rankings."""
    metrics = evaluate(model, evaluator)
    similarities = pair_similarities(
        model, triplets, config.evaluation.similarity_sample, config.evaluation.batch_size, cache
    )
    rankings = evaluator.rankings() if isinstance(evaluator, PoolSequentialEvaluator) else {}
    return Scores(metrics, similarities, rankings)


def baseline_stage(
    files: RunFiles,
    model: SentenceTransformer,
    evaluator: BaseEvaluator,
    triplets: Dataset,
    config: RunConfig,
    cache: EmbeddingCache | None = None,
) -> Scores:
    """Score the untouched model on the test questions (or reuse the run's saved baseline)."""
    if files.baseline.is_file():
        saved = read_json(files.baseline)
        rankings = rankings_from_json(saved.get("rankings", {}))  # runs of older versions saved none
        return Scores(saved["baseline"], saved["similarities"], rankings)
    baseline = score(model, evaluator, triplets, config, cache)
    write_json(
        files.baseline,
        {
            "baseline": baseline.metrics,
            "similarities": baseline.similarities,
            "rankings": rankings_to_json(baseline.rankings),
        },
    )
    return baseline


def train_stage(
    files: RunFiles,
    model: SentenceTransformer,
    train_triplets: Dataset | DatasetDict,
    step_triplets: Dataset,
    evaluator: BaseEvaluator,
    config: RunConfig,
    device: str,
    resumed: bool,
    baseline: dict[str, float] | None = None,
    scores_dev: bool = False,
) -> TrainingResult:
    """Train, merge with the base model as ``merge_with_base`` says, and save the final model; after a crash,
    continue from the last checkpoint, and when the final model was already saved, only read back what the training
    reported. ``baseline`` is logged at step 0; with ``scores_dev`` the evaluator scores dev questions, on which the
    best checkpoint (``training.best_on_dev``) and the merge's weight are chosen."""
    if files.final_model.is_dir():
        logger.info("Training had finished: using the saved %s", files.final_model)
        result = history_from_checkpoint(last_checkpoint(files.checkpoints))
        result.merge = read_json(files.merge) if files.merge.is_file() else None
        return result
    checkpoint = last_checkpoint(files.checkpoints) if resumed else None
    if checkpoint is not None:
        logger.info("Continuing the training from %s (step %s)", checkpoint, Path(checkpoint).name.rsplit("-", 1)[-1])
    elif resumed:
        logger.info("Resuming a run that had no checkpoint yet: its training starts from step 0")
    # The gist losses' frozen guide (the mining model was released after mining: loaded again, on this device).
    guide = load_guide(config, device)
    result = train_model(
        model,
        train_triplets,
        step_triplets,  # the evaluation loss: the same questions as the step evaluator
        evaluator,
        config,
        str(files.checkpoints),
        device,
        str(files.tensorboard) if "tensorboard" in config.training.report_to else None,
        resume_from_checkpoint=checkpoint,
        guide=guide,
        baseline=baseline,
        scores_dev=scores_dev,
    )
    if checkpoint is not None:
        result.resumed_from_step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
    if result.chosen_step is not None:
        logger.info(
            "The best checkpoint on the dev questions is step %d of %d", result.chosen_step, result.global_step
        )
    if distributed.is_main_process():  # under torchrun, rank 0 merges and saves; the other ranks stop here
        model, merge = choose_merge(
            model,
            lambda: load_configured_model(config, config.model_name, device, "model_name"),
            dev_scorer(evaluator, config.evaluation.precision) if scores_dev else None,
            config.merge_with_base,
        )
        result.merge = merge.to_dict()
        write_json(files.merge, result.merge)
        describe_model(model, config)  # the card names the data set, base model, language and license
        save_model_atomically(model, files.final_model)  # a temporary folder, then renamed: never half-written
    return result


def dev_scorer(evaluator: BaseEvaluator, precision: str) -> Callable[[SentenceTransformer], dict[str, float]]:
    """Scores a model on the dev questions in the precision of baseline and final (``evaluation.precision``)."""

    def scored(model: SentenceTransformer) -> dict[str, float]:
        with encoding(precision, model):
            return evaluate(model, evaluator)

    return scored


@dataclass
class FinalScores:
    """The final stage's output: the saved final model, reloaded, and its scores."""

    model: SentenceTransformer
    test: Scores  # the test questions, scored as the baseline was
    dev: dict[str, float] | None  # the dev questions, scored as during training (None without dev questions)


def final_stage(
    files: RunFiles,
    config: RunConfig,
    device: str,
    test_set: EvaluationSet,
    step_set: EvaluationSet,
    step_evaluator: BaseEvaluator,
) -> FinalScores:
    """Reload the saved final model and score it under the baseline's conditions; with dev questions, also on them as
    during training (what a choice between recipes is made on, bench-ablation)."""
    model = load_configured_model(config, str(files.final_model), device, "the saved final model")
    # The final model's pool embeddings stay in the run folder: make infer-embed reads them instead of encoding.
    cache = EmbeddingCache(files.embeddings)
    evaluator = evaluator_for_set(config, test_set, model.get_embedding_dimension(), cache)
    with encoding(config.evaluation.precision, model):  # as the baseline was scored
        test = score(model, evaluator, test_set.triplets, config, cache)
        dev = evaluate(model, step_evaluator) if step_set.split == "dev" else None
    return FinalScores(model, test, dev)


def finish_run(files: RunFiles, metrics: dict[str, Any], similarities: dict[str, Any]) -> None:
    """Write the results people read, move ``latest``, and mark the run complete, in an order that a kill at
    any point leaves resumable: similarities, metrics, report, ``latest``, then ``COMPLETE``."""
    write_json(files.similarities, similarities)
    write_json(files.metrics, metrics)
    write_report(files.run_dir, metrics, similarities)
    point_latest(files.run_dir)
    mark_complete(files.run_dir)


def finish_scored_run(files: RunFiles) -> dict[str, Any]:
    """Finish a run killed after its ``metrics.json`` was written: report, ``latest`` and the marker."""
    logger.info("The run had been scored: writing its report and marking it complete")
    metrics = read_json(files.metrics)
    similarities = read_json(files.similarities) if files.similarities.is_file() else {}
    finish_run(files, metrics, similarities)
    return metrics
