"""The checks of values that have the right type but cannot work, each with the fix in its one-line message."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from embedft.columns import FORMAT_COLUMNS
from embedft.config.schema import GUIDED_LOSSES, RunConfig, TrainingConfig
from embedft.errors import ConfigError
from embedft.masking import mask_secrets

logger = logging.getLogger(__name__)


# Learning rates outside this range are warned about: fine-tuning embedding models uses about 1e-6 to 1e-3.
LEARNING_RATES = (1e-7, 1e-2)


def validate(config: RunConfig) -> None:
    """Reject values that have the right type but cannot work, with the fix in the message."""
    validate_sizes(config)
    validate_data_options(config)
    validate_evaluation_options(config)
    validate_training_options(config.training)
    validate_loss_options(config)
    validate_mining_options(config)
    if not config.use_prompts and (config.query_prompt is not None or config.document_prompt is not None):
        raise ConfigError("query_prompt/document_prompt are set but use_prompts is false: drop one of them")
    if config.hub_model_id is not None and not re.match(r"^[\w.-]+/[\w.-]+$", config.hub_model_id):
        raise ConfigError(f"'hub_model_id' must be a hub repo id 'user/name', got {config.hub_model_id!r}")
    if not 1 <= config.tensorboard_port <= 65535:
        raise ConfigError(f"'tensorboard_port' must be a port number (1-65535), got {config.tensorboard_port}")


def validate_sizes(config: RunConfig) -> None:
    """Counts, sizes and rates that must be positive, the held-out sizes, and the optimiser's ranges."""
    positive = {
        "num_epochs": config.num_epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "temperature": config.temperature,
        "mining.batch_size": config.mining.batch_size,
        "mining.chunk_size": config.mining.chunk_size,
        "training.max_steps": config.training.max_steps,
        "training.mini_batch_size": config.training.mini_batch_size,
        "training.length_chunks": None if config.training.length_chunks == "auto" else config.training.length_chunks,
        "evaluation.batch_size": config.evaluation.batch_size,
    }
    for key, value in positive.items():
        if value is not None and value <= 0:
            raise ConfigError(f"'{key}' must be greater than 0, got {value:g}")
    if config.max_seq_length is not None and config.max_seq_length <= 0:
        raise ConfigError(f"'max_seq_length' must be greater than 0 or null, got {config.max_seq_length}")
    workers = config.training.dataloader_num_workers
    if workers < 0:
        raise ConfigError(f"'training.dataloader_num_workers' must be 0 or more, got {workers}")
    if config.sample_size is not None and config.sample_size <= 0:
        raise ConfigError(f"'sample_size' must be greater than 0 or null (all pairs), got {config.sample_size}")
    for key, size in (("test_size", config.test_size), ("dev_size", config.dev_size)):
        if size == "auto":
            continue
        if isinstance(size, float) and not 0 < size < 1:
            raise ConfigError(f"'{key}' as a fraction must lie in (0, 1), got {size}")
        if isinstance(size, int) and size < 1:
            raise ConfigError(f"'{key}' must be at least 1 held-out question, got {size}")
    merge = config.merge_with_base
    if isinstance(merge, float) and not 0 <= merge <= 1:
        raise ConfigError(f"'merge_with_base' must be 'auto', 'off' or a weight a in [0, 1], got {merge}")
    if not LEARNING_RATES[0] <= config.learning_rate <= LEARNING_RATES[1]:
        logger.warning(
            "learning_rate %g is outside the usual %g to %g for fine-tuning an embedding model (3e-5 is the "
            "default): check it (3e5 for 3e-5?)",
            config.learning_rate,
            *LEARNING_RATES,
        )
    if config.weight_decay < 0:
        raise ConfigError(f"'weight_decay' must be 0 or more, got {config.weight_decay}")
    if not 0 <= config.warmup_ratio < 1:
        raise ConfigError(f"'warmup_ratio' must lie in [0, 1), got {config.warmup_ratio}")


def validate_evaluation_options(config: RunConfig) -> None:
    """Matryoshka sizes, the similarity sample and the bounds of the evaluation during training."""
    for key, dims in (
        ("evaluation.matryoshka_dims", config.evaluation.matryoshka_dims),
        ("training.matryoshka_dims", config.training.matryoshka_dims),
    ):
        for dim in dims:
            if dim < 1:
                raise ConfigError(f"'{key}' must hold positive sizes, got {dim}")
    if config.evaluation.similarity_sample < 0:
        raise ConfigError("'evaluation.similarity_sample' must be 0 or more")
    for key, bound, meaning in (
        ("max_pool", config.evaluation.max_pool, "the whole pool"),
        ("max_queries", config.evaluation.max_queries, "all questions"),
    ):
        if bound is not None and bound <= 0:
            raise ConfigError(f"'evaluation.{key}' must be greater than 0, or null for {meaning}; got {bound}")


def validate_loss_options(config: RunConfig) -> None:
    """Mixed precision, checkpoints kept, and what the gist losses need (one negative per row, a guide that is not
    a static model)."""
    training = config.training
    if training.fp16 and training.bf16:
        raise ConfigError("'training.fp16' and 'training.bf16' are both true: choose one (bf16 where the GPU has it)")
    if training.save_total_limit is not None and training.save_total_limit < 1:
        raise ConfigError("'training.save_total_limit' must be at least 1, or null to keep every checkpoint")
    check_gist_negatives(training.loss, config.mining.num_negatives)
    check_contrast_options(training)
    key = guide_key(training)
    if training.loss in GUIDED_LOSSES and getattr(config, key).startswith("static:"):
        # Caught here, before mining, for static: names; a hub static model is refused once loaded (load_guide).
        raise ConfigError(static_guide_refusal(training, key))


# The losses that take training.directions, partition_mode and hardness_mode (MultipleNegativesRankingLoss's own).
CONTRAST_LOSSES = ("mnrl", "cached_mnrl")


def check_contrast_options(training: TrainingConfig) -> None:
    """``training.directions``, ``partition_mode`` and ``hardness_mode``/``hardness_strength``: only the mnrl losses
    take them, ``query_to_doc`` is always among the directions, and ``per_direction`` normalises only the directions
    between a query and a document."""
    changed = [
        key
        for key, value, default in (
            ("directions", training.directions, ["query_to_doc"]),
            ("partition_mode", training.partition_mode, "joint"),
            ("hardness_mode", training.hardness_mode, None),
        )
        if value != default
    ]
    if changed and training.loss not in CONTRAST_LOSSES:
        keys = ", ".join(f"'training.{key}'" for key in changed)
        raise ConfigError(f"{keys} only apply to training.loss mnrl or cached_mnrl, not {training.loss}")
    if "query_to_doc" not in training.directions:
        raise ConfigError("'training.directions' must include query_to_doc (the query's own answer against the rest)")
    if len(set(training.directions)) < len(training.directions):
        raise ConfigError(f"'training.directions' names a direction twice: {training.directions}")
    same_side = {"query_to_query", "doc_to_doc"} & set(training.directions)
    if training.partition_mode == "per_direction" and same_side:
        raise ConfigError(
            f"'training.partition_mode' per_direction cannot normalise {sorted(same_side)}: use joint, or keep only "
            "query_to_doc and doc_to_query"
        )
    if training.hardness_strength < 0:
        raise ConfigError(f"'training.hardness_strength' must be 0 or more, got {training.hardness_strength}")
    if training.hardness_strength > 0 and training.hardness_mode is None:
        raise ConfigError("'training.hardness_strength' is set but training.hardness_mode is null: set both")


def validate_mining_options(config: RunConfig) -> None:
    """The exact-search limit, the number of negatives and the candidate window."""
    mining = config.mining
    if mining.exact_search_limit is not None and mining.exact_search_limit < 0:
        raise ConfigError(
            f"'mining.exact_search_limit' must be 0 or more (0: always approximate), or null; got "
            f"{mining.exact_search_limit}"
        )
    if mining.num_negatives < 0:
        raise ConfigError(
            f"'mining.num_negatives' must be 0 (in-batch negatives only) or more, got {mining.num_negatives}"
        )
    if mining.rounds < 1:
        raise ConfigError(f"'mining.rounds' must be 1 or more, got {mining.rounds}")
    if mining.rounds > 1 and mining.num_negatives == 0:
        raise ConfigError("'mining.rounds' above 1 mines again, but mining.num_negatives is 0: set one of them")
    if mining.range_min < 0:
        raise ConfigError(f"'mining.range_min' must be 0 or more, got {mining.range_min}")
    if mining.range_max is not None:
        if mining.range_max <= mining.range_min:
            raise ConfigError(
                f"'mining.range_min' ({mining.range_min}) must be smaller than 'mining.range_max' ({mining.range_max})"
            )
        window = mining.range_max - mining.range_min
        if mining.num_negatives > window:
            raise ConfigError(
                f"'mining.num_negatives' ({mining.num_negatives}) exceeds the candidate window range_max - range_min "
                f"= {window}: lower num_negatives or widen the range"
            )


def check_gist_negatives(loss: str, negatives_per_row: int) -> None:
    """GISTEmbedLoss takes one negative per row: refuse more, with the loss that takes any number.

    Raises:
        ConfigError: ``loss`` is gist and the rows have more than one negative.
    """
    if loss == "gist" and negatives_per_row > 1:
        raise ConfigError(
            f"'training.loss' gist takes one negative per row and mining.num_negatives is {negatives_per_row}: use "
            "cached_gist, which takes any number, or mining.num_negatives: 1"
        )


def guide_key(training: TrainingConfig) -> str:
    """The config key that names the gist losses' guide: ``model_name`` (``guide_model: base``) or
    ``mining_model_name``."""
    return "model_name" if training.guide_model == "base" else "mining_model_name"


def static_guide_refusal(training: TrainingConfig, key: str, name: str | None = None) -> str:
    """The one line that refuses a static embedding model as the guide of a gist loss, and says what to set.

    Args:
        training: the training section (its loss and guide_model).
        key: :func:`guide_key`, the key that names the guide.
        name: the guide's model name, when it was loaded and found static (a hub static model).
    """
    fix = "set training.guide_model: base" if key == "mining_model_name" else "use training.loss: mnrl"
    if name is None:
        guide = f"{key} (training.guide_model: {training.guide_model}) is a static model"
    else:
        guide = f"the guide ({key} '{name}', training.guide_model: {training.guide_model}) is a static embedding model"
    return f"'training.loss' {training.loss} needs a guide with a transformers tokenizer, and {guide}: {fix}"


# The trainer's loggers (transformers' INTEGRATION_TO_CALLBACK): the module each one needs and its pip package.
LOGGERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "neptune": ("neptune", "neptune"),
    "swanlab": ("swanlab", "swanlab"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "azure_ml": ("azureml", "azureml-core"),
    "dagshub": ("dagshub", "dagshub"),
    "flyte": ("flytekit", "flytekit"),
}


def validate_step_interval(key: str, value: int | float | str | None) -> None:
    """An eval/save/logging interval is a positive number of optimizer steps, a share of the run in (0, 1), 'auto' or
    (eval_steps only) null."""
    if isinstance(value, float) and not 0 < value < 1:
        raise ConfigError(
            f"'{key}' as a share of the run's optimizer steps must lie in (0, 1), got {value}: write a whole number "
            "of steps as an integer"
        )
    if isinstance(value, int) and value < 1:
        raise ConfigError(f"'{key}' must be at least 1 optimizer step, a share in (0, 1) or 'auto'; got {value}")


def validate_training_options(training: TrainingConfig) -> None:
    """The training section's checks that need no trainer import: step intervals and loggers (the trainer arguments
    given under ``training:`` are checked by constructing them:
    :func:`~embedft.training.arguments.check_training_arguments`)."""
    import importlib.util

    for key in ("eval_steps", "save_steps", "logging_steps"):
        validate_step_interval(f"training.{key}", getattr(training, key))
    for name in training.report_to:
        if name in ("none", "all") and len(training.report_to) == 1:
            continue
        if name not in LOGGERS:
            raise ConfigError(
                f"'training.report_to' has unknown logger {name!r}: choose among {', '.join(LOGGERS)}, or [] for none"
            )
        module, package = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"'training.report_to' has {name}, whose package is not installed: pip install {package} (or remove "
                f"{name} from training.report_to)"
            )


def validate_data_options(config: RunConfig) -> None:
    """Reject data options that contradict each other: the column keys of pairs data with a format that names its
    own columns, a negative column that is also the query or answer column, and subsets or revisions of a data set
    that has none (a packaged one, or no eval_dataset_name)."""
    if config.data_format in FORMAT_COLUMNS:
        positives, negatives = FORMAT_COLUMNS[config.data_format]
        if config.answer_column != "answer":
            raise ConfigError(
                f"'answer_column' is for data_format pairs; {config.data_format} reads its positives from "
                f"'{positives}': remove answer_column or set data_format: pairs"
            )
        if config.negative_column is not None:
            raise ConfigError(
                f"'negative_column' is for data_format pairs; {config.data_format} reads its negatives from "
                f"'{negatives}': remove negative_column or set data_format: pairs"
            )
    if config.data_format == "beir":
        check_beir_options(config)
    delimiter = config.csv_delimiter
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ConfigError(
            f"'csv_delimiter' must be one character other than a quote or a line break (e.g. ';' or \"\\t\"), got "
            f"{delimiter!r}"
        )
    if config.relevance_column is not None and config.relevance_column in (config.query_column, config.answer_column):
        raise ConfigError(
            f"'relevance_column' is '{config.relevance_column}', also the query or answer column: set it to the "
            "column of relevance grades"
        )
    if config.negative_column is not None and config.negative_column in (config.query_column, config.answer_column):
        raise ConfigError(
            f"'negative_column' is '{config.negative_column}', also the query or answer column: set it to the column "
            "of negatives"
        )
    for key, value, source in (
        ("dataset_config", config.dataset_config, config.dataset_name),
        ("dataset_revision", config.dataset_revision, config.dataset_name),
        ("eval_dataset_config", config.eval_dataset_config, config.eval_dataset_name),
        ("eval_dataset_revision", config.eval_dataset_revision, config.eval_dataset_name),
    ):
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(f"'{key}' is empty: name the subset or revision, or set it to null")
        if source is None:
            raise ConfigError(f"'{key}' is set but eval_dataset_name is null: set eval_dataset_name or remove {key}")
        if source.startswith("packaged:"):
            raise ConfigError(f"'{key}' is set but {source} is a packaged data set, which has none: remove {key}")


def check_beir_options(config: RunConfig) -> None:
    """A BEIR folder names its own columns and carries its own split: refuse the keys that would say otherwise."""
    for key, value, default in (
        ("split_column", config.split_column, None),
        ("eval_dataset_name", config.eval_dataset_name, None),
        ("negative_column", config.negative_column, None),
        ("relevance_column", config.relevance_column, None),
        ("query_column", config.query_column, "query"),
        ("answer_column", config.answer_column, "answer"),
    ):
        if value != default:
            raise ConfigError(
                f"'{key}' is set but data_format is beir, whose folder names its columns and carries its split "
                f"(qrels/train.tsv, dev.tsv, test.tsv): remove {key}"
            )


def refuse_secrets(values: dict[str, Any], prefix: str = "") -> None:
    """Raise a ConfigError for a value that holds a token or URL credentials: they belong in the environment."""
    for key, value in values.items():
        if isinstance(value, dict):
            refuse_secrets(value, f"{prefix}{key}.")
        elif mask_secrets(value) != value:
            raise ConfigError(
                f"'{prefix}{key}' holds what looks like an access token or password: remove it from the config and "
                "log in with HF_TOKEN or 'hf auth login' (the config is saved with every run)"
            )


def check_matryoshka_dims(dims: Sequence[int], embedding_dimension: int | None, key: str) -> None:
    """Raise a ConfigError for a truncation size the model cannot give (None: size unknown, nothing to check).

    Args:
        dims: the sizes of ``key`` (``evaluation.matryoshka_dims`` or ``training.matryoshka_dims``).
        embedding_dimension: the model's embedding size.
        key: the option the sizes come from, named in the error.
    """
    for dim in dims:
        if embedding_dimension is not None and dim > embedding_dimension:
            raise ConfigError(f"'{key}' has {dim}, larger than the model's {embedding_dimension} dimensions")
