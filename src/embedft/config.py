"""Typed, validated run configuration.

Every option lives in one of the dataclasses below, with its type, default and help text: the schema documents
itself (``python scripts/show_config.py --reference`` prints it). A YAML file and ``key=value`` overrides are
checked against it before any model loads: an unknown key, a wrong type or an impossible value raises
:class:`~embedft.errors.ConfigError` with one line that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from embedft.errors import ConfigError

logger = logging.getLogger(__name__)

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
PACKAGED_FAQ = "packaged:construction-faq"


def _option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text travels in its metadata."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class MiningConfig:
    """Hard-negative mining with ``sentence_transformers.util.mine_hard_negatives`` and a separate mining model."""

    num_negatives: int = _option(
        1,
        "Hard negatives mined per training pair. 1: (query, answer, negative) triplets; more: one (query, answer, "
        "negative_1, ..., negative_k) row per pair, the extra columns extra negatives for the loss, and a pair that "
        "got fewer than num_negatives is left out (mine_hard_negatives' n-tuple format; the log and mining.json "
        "count them). 0: no training mining, the other answers of each batch are the only negatives (in-batch "
        "negatives; evaluation negatives are still mined).",
    )
    given_negatives: Literal["mix", "use", "ignore"] = _option(
        "mix",
        "What to do with negatives the data already has (flagembedding 'neg', tevatron 'negative_passages', pairs "
        "negative_column), after dropping any that is a positive of the same question or an answer of a held-out "
        "question (counted in mining.json). 'mix': a pair's given negatives first, mined ones fill up to "
        "num_negatives (only questions short of given negatives are mined). 'use': the given negatives only; a pair "
        "with fewer than num_negatives is left out (counted), nothing is mined. 'ignore': mine as if there were none. "
        "Of more than num_negatives given, sampling_strategy 'top' takes the first in the data's order, 'random' a "
        "seeded sample. Evaluation negatives are always mined.",
    )
    batch_size: int = _option(512, "Batch size with which the mining model encodes texts.")
    margin: float | None = _option(
        0.0,
        "Absolute margin: a candidate counts as a negative only if its similarity to the query is at least this "
        "much below the positive's. 0 keeps negatives that score below the positive; null disables the check.",
    )
    relative_margin: float | None = _option(
        None, "Relative margin (NV-Retriever's TopK-PercPos uses 0.05); null disables it."
    )
    max_score: float | None = _option(None, "Skip candidates whose similarity to the query is above this.")
    min_score: float | None = _option(None, "Skip candidates whose similarity to the query is below this.")
    range_min: int = _option(0, "Skip the range_min most similar candidates (likely unlabelled positives).")
    range_max: int | None = _option(
        100,
        "Consider the range_max most similar candidates (plus room for the query's own positives); null derives it "
        "once for the whole training set from num_negatives and the filters, as mine_hard_negatives does.",
    )
    sampling_strategy: Literal["top", "random"] = _option(
        "top", "'top' takes the hardest candidates, 'random' samples among the candidates that pass the filters."
    )
    chunk_size: int = _option(
        200_000,
        "Queries are searched in chunks of at most this many against the whole pool, so memory stays bounded on "
        "large data. Results equal unchunked mining.",
    )
    exact_search_limit: int | None = _option(
        200_000,
        "Pools of up to this many documents are searched exactly; larger ones with an approximate faiss index (IVF "
        "with 4-bit PQ fast scan and exact re-scoring; its candidate recall is in docs/benchmarks.md). null: always "
        "exact.",
    )
    device: str = _option("cpu", "Device of the mining model; the CPU keeps the GPU's memory for training.")


@dataclass
class TrainingConfig:
    """Advanced trainer settings (SentenceTransformerTrainer / transformers TrainingArguments)."""

    gradient_checkpointing: bool = _option(False, "Trade compute for memory in the main model's backward pass.")
    fp16: bool = _option(False, "Mixed precision float16 (CUDA only; falls back to fp32 with a warning elsewhere).")
    bf16: bool = _option(
        True,
        "Mixed precision bfloat16 training where the hardware has it (Ampere+ GPUs, CPUs with AVX512-BF16/AMX); "
        "fp32 with a warning elsewhere.",
    )
    eval_steps: int | float | Literal["auto"] | None = _option(
        "auto",
        "Run the evaluators every this many optimizer steps: an integer, a share of the run's optimizer steps in "
        "(0, 1) (0.1: ten times a run), or 'auto': about 10 times a run, every ceil(steps / 10) steps but at least "
        "10 and at most 1000 steps apart; null: only before and after training.",
    )
    save_steps: int | float | Literal["auto"] = _option(
        "auto", "Write a checkpoint every this many optimizer steps; the same forms as eval_steps (null excepted)."
    )
    max_steps: int | None = _option(
        None, "Stop after this many optimizer steps (e.g. a quick trial or a benchmark); null: num_epochs decides."
    )
    logging_steps: int | float = _option(
        10, "Log loss and learning rate every this many optimizer steps, or a share of the run's steps in (0, 1)."
    )
    save_total_limit: int | None = _option(
        2,
        "Keep at most this many checkpoints (the newest, and with metric_for_best_model also the best one); null "
        "keeps all.",
    )
    report_to: list[str] = _option(
        ["tensorboard"],
        "Trainer loggers, any the trainer supports: tensorboard, wandb, mlflow, trackio, comet_ml, clearml, dvclive, "
        "neptune, swanlab, codecarbon, azure_ml, dagshub, flyte; [] or [none] for none. Each needs its package "
        "installed (e.g. pip install mlflow); the baseline scores are logged at step 0 as eval_baseline_<metric>.",
    )
    dataloader_num_workers: int = _option(0, "Worker processes that prepare batches (0: in the main process).")
    loss: Literal["mnrl", "cached_mnrl", "gist", "cached_gist", "symmetric"] = _option(
        "mnrl",
        "Training loss; each ranks a query's answer above the batch's other answers and the mined negatives, "
        "similarities divided by temperature. 'mnrl': MultipleNegativesRankingLoss. 'cached_mnrl': its GradCache "
        "form, a large batch_size in the memory of mini_batch_size. 'gist': GISTEmbedLoss, a frozen guide_model "
        "drops in-batch negatives it scores above the positive (likely false negatives). 'cached_gist': both. "
        "'symmetric': MNRL from question to answer and from answer to question.",
    )
    mini_batch_size: int = _option(
        32, "Texts per forward pass of cached_mnrl and cached_gist: memory follows it, not batch_size."
    )
    guide_model: Literal["base", "mining"] = _option(
        "base",
        "Guide of the gist losses, frozen on the training device: 'base' (a second, untrained copy of model_name) or "
        "'mining' (mining_model_name; a static model cannot guide).",
    )
    matryoshka_dims: list[int] = _option(
        [],
        "Also train embeddings truncated to these sizes (MatryoshkaLoss around the loss), e.g. [256, 128, 64]; the "
        "full size is always trained too. []: off.",
    )
    # Any other SentenceTransformerTrainingArguments field given under training:, with the library's own name and
    # value (gradient_accumulation_steps, lr_scheduler_type, optim, load_best_model_at_end, ...). Written back as
    # plain keys of training: (to_dict), so a run's saved config reloads as it was written.
    trainer_arguments: dict[str, Any] = field(default_factory=dict, metadata={"passthrough": True})

    @property
    def accumulation_steps(self) -> int:
        """Batches per optimizer step (the trainer's ``gradient_accumulation_steps``, 1 unless given)."""
        return int(self.trainer_arguments.get("gradient_accumulation_steps", 1))


@dataclass
class EvaluationConfig:
    """How the fine-tuned model is scored."""

    batch_size: int = _option(64, "Batch size for encoding during evaluation.")
    information_retrieval: bool = _option(
        True,
        "Rank the whole answer pool (plus corpus_file) for each held-out question: NDCG@10, MRR@10, Recall@1/10/100, "
        "MAP@100.",
    )
    matryoshka_dims: list[int] = _option(
        [], "Also score retrieval with embeddings truncated to these sizes, e.g. [512, 256, 128]."
    )
    similarity_sample: int = _option(
        1000, "Evaluation triplets whose similarities are histogrammed in the report (before and after)."
    )
    max_pool: int | None = _option(
        10_000,
        "Documents ranked by the evaluation during training: every positive of the questions, their mined hard "
        "negatives, then a seeded random sample of the rest (the NanoBEIR recipe); null: the whole pool. Baseline "
        "and final rank the whole pool unless final_pool is 'bounded'.",
    )
    max_queries: int | None = _option(
        None,
        "Questions scored during training, a seeded sample; null: all of them. Baseline and final score every test "
        "question unless final_pool is 'bounded'.",
    )
    final_pool: Literal["whole", "bounded"] = _option(
        "whole",
        "What baseline and final rank: 'whole' (every test question against the whole pool) or 'bounded' (the "
        "max_pool / max_queries bounds of the evaluation during training, for a CPU and a large pool; metrics.json "
        "and the report say so).",
    )


@dataclass
class RunConfig:
    """One fine-tuning run: data, models, hyper-parameters and where results go."""

    # Data
    dataset_name: str = _option(
        PACKAGED_FAQ,
        "Where the (query, answer) pairs come from: 'packaged:construction-faq' (shipped, offline), a local "
        ".jsonl/.json/.csv/.parquet file or data set folder, or a Hugging Face hub name such as 'ayushexel/xyneft'.",
    )
    dataset_split: str = _option("train", "Split to read from a hub data set or data set folder.")
    dataset_config: str | None = _option(
        None,
        "Subset (configuration) of a hub data set or data set folder that has several, e.g. 'en' (load_dataset's "
        "name); null: the only one. Not for a single file or a packaged data set.",
    )
    dataset_revision: str | None = _option(
        None,
        "Branch, tag or commit of a hub data set to read (pin a commit to repeat a run exactly); null: main. Hub "
        "names only.",
    )
    data_format: Literal["auto", "pairs", "flagembedding", "tevatron"] = _option(
        "auto",
        "Row layout. 'pairs': one (query_column, answer_column) pair a row; a list of answers in answer_column gives "
        "one pair per answer. 'flagembedding': {query, pos: [...], neg: [...]} (FlagEmbedding's training jsonl). "
        "'tevatron': {query, positive_passages: [{docid, title, text}], negative_passages: [...]}, a passage read as "
        "title + ' ' + text (text alone when the title is empty). Each positive gives one pair; 'neg' and "
        "'negative_passages' are given negatives (mining.given_negatives). 'auto': pairs when answer_column is in the "
        "data, else tevatron when it has positive_passages, else flagembedding when it has pos.",
    )
    query_column: str = _option("query", "Column holding the questions (anchors), in every data_format.")
    answer_column: str = _option("answer", "Column holding the answers (positives) in pairs data.")
    negative_column: str | None = _option(
        None,
        "Column of pairs data holding given negatives for the pair: one text, or a list of texts (see "
        "mining.given_negatives); null: none. flagembedding and tevatron data name their own ('neg', "
        "'negative_passages').",
    )
    sample_size: int | None = _option(
        None,
        "Training pairs drawn (seeded) after the split, so the evaluation set never depends on it; null uses all. "
        "Larger than the training side: all, warned.",
    )
    test_size: int | float | None = _option(
        100,
        "Held-out questions for baseline and final scores: a count, or a fraction in (0, 1). Questions that share an "
        "answer are held out together, with all their answers. With split_column: caps the official test questions "
        "(null: all of them).",
    )
    dev_size: int | float | None = _option(
        None,
        "Questions held out of the training side (like test_size) for evaluation during training, so the test "
        "questions are scored only before and after; null: step-wise scores use the test questions.",
    )
    split_column: str | None = _option(
        None, "Column that holds the data's own split (e.g. 'split'); null: a seeded random split by test_size."
    )
    train_split_value: str = _option("train", "Value of split_column that marks training rows.")
    test_split_value: str = _option("test", "Value of split_column that marks evaluation rows.")
    eval_dataset_name: str | None = _option(
        None, "A separate evaluation file or data set (same columns); all of dataset_name then trains."
    )
    eval_dataset_config: str | None = _option(
        None, "Subset of eval_dataset_name, like dataset_config (the eval data set's split is dataset_split too)."
    )
    eval_dataset_revision: str | None = _option(
        None, "Branch, tag or commit of a hub eval_dataset_name, like dataset_revision."
    )
    corpus_file: str | None = _option(
        None,
        "Extra documents for retrieval evaluation and mining: .jsonl rows with 'text' (optional 'title'), or .txt "
        "with one document per line. Those equal to an answer of a held-out question are never training negatives.",
    )
    seed: int = _option(12, "Seed of the sample, the split, mining and training.")
    # Models
    model_name: str = _option(
        PACKAGED_MINILM,
        "Model to fine-tune: 'packaged:all-MiniLM-L6-v2' (shipped, offline), a local folder, or a hub name.",
    )
    mining_model_name: str = _option(
        PACKAGED_MINILM, "Model that mines hard negatives (on mining.device); same forms as model_name."
    )
    max_seq_length: int | None = _option(None, "Truncate inputs to this many tokens; null keeps the model's own.")
    use_prompts: bool = _option(
        True,
        "Apply the model's own query and document prompts (embeddinggemma's 'query'/'document', e5's "
        "'query'/'passage') in mining, training, evaluation and inference alike.",
    )
    query_prompt: str | None = _option(
        None,
        "Instruction put before every query in mining, training, evaluation and inference, and saved with the final "
        "model (its 'query' prompt, so encode_query applies it), e.g. 'query: ' (e5) or 'Represent this sentence for "
        "searching relevant passages: ' (BGE); null keeps the model's own. Applies to mining_model_name (and a "
        "mining guide) only when it is model_name.",
    )
    document_prompt: str | None = _option(
        None,
        "Instruction put before every answer, negative and corpus document, like query_prompt (the model's "
        "'document' prompt, used by encode_document), e.g. 'passage: ' (e5); null keeps the model's own.",
    )
    trust_remote_code: bool = _option(False, "Allow a hub model to run its own Python code. Off unless needed.")
    cache_dir: str | None = _option(None, "Where hub models and data sets are cached; null uses the HF default.")
    embedding_cache: bool = _option(
        True,
        "Keep every text's embedding on disk (<cache_dir>/embedft/embeddings, else ~/.cache/embedft/embeddings), per "
        "model, side and prompt, so a rerun, and the baseline when the miner is the base model, encodes nothing "
        "twice. false: a temporary folder per run.",
    )
    # Optimisation
    num_epochs: float = _option(3, "Passes over the mined training triplets.")
    batch_size: int = _option(32, "Training rows per batch (every loss's in-batch negatives grow with it).")
    learning_rate: float = _option(3e-5, "Peak learning rate of AdamW.")
    weight_decay: float = _option(0.01, "AdamW weight decay.")
    warmup_ratio: float = _option(0.1, "Fraction of training steps with linear learning-rate warm-up.")
    temperature: float = _option(
        0.05, "Loss temperature: similarities are divided by it (MNRL's scale = 1/temperature); lower is sharper."
    )
    device: str | None = _option(
        None,
        "Training device ('cpu', 'cuda', 'mps'); null picks CUDA if present. The trainer uses the first visible GPU "
        "(all of them when there are several): pick GPUs with CUDA_VISIBLE_DEVICES.",
    )
    # Outputs
    output_dir: str = _option("outputs", "Folder that holds one sub-folder per run and the 'latest' link.")
    run_name: str | None = _option(None, "Name of this run's folder; null uses a timestamp. Never reused.")
    tensorboard_port: int = _option(6006, "Port of the TensorBoard server started by 'make train-embed-tb'.")
    language: str | list[str] | None = _option(
        None, "Language code(s) of the data for the final model's card (README.md), e.g. 'en' or ['en', 'sv']."
    )
    license: str | None = _option(None, "License of the final model for its card, e.g. 'apache-2.0'.")
    hub_model_id: str | None = _option(
        None,
        "Push the final model to this Hugging Face hub repo ('user/name') when the run has finished (log in with "
        "HF_TOKEN or 'hf auth login'); null: never pushed. A failed push is one warning and the local model is kept.",
    )
    hub_private: bool = _option(True, "Create the hub_model_id repo as private (when it does not exist yet).")
    # Sections
    mining: MiningConfig = field(default_factory=MiningConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    @property
    def source_names(self) -> list[str]:
        """Every configured data set and model name, and the hub repo the final model is pushed to, to decide whether
        the hub is needed at all."""
        names = [self.dataset_name, self.eval_dataset_name, self.model_name, self.mining_model_name, self.hub_model_id]
        return [name for name in names if name is not None]

    def to_dict(self) -> dict[str, Any]:
        """The options as plain data; the trainer arguments given under ``training:`` stay plain keys there."""
        values = dataclasses.asdict(self)
        values["training"].update(values["training"].pop("trainer_arguments"))
        return values


SECTIONS: dict[str, type] = {"mining": MiningConfig, "training": TrainingConfig, "evaluation": EvaluationConfig}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides and return the validated :class:`RunConfig`.

    Args:
        path: YAML file; None starts from the embedded defaults.
        overrides: strings such as ``"num_epochs=1"`` or ``"mining.num_negatives=2"``; values are parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or impossible value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
    for override in overrides or []:
        key, value = parse_override(override)
        set_dotted(raw, key, value)
    move_deprecated_warmup(raw)
    config = build(RunConfig, raw, prefix="")
    validate(config)
    refuse_secrets(config.to_dict())
    if config.training.trainer_arguments:
        # Only a config that passes trainer arguments pays for importing the trainer (seconds) to check them.
        from embedft.training import check_training_arguments

        check_training_arguments(config)
    return config


def move_deprecated_warmup(raw: dict[str, Any]) -> None:
    """Turn the deprecated ``training.warmup_ratio`` into the one warm-up setting, the top-level ``warmup_ratio``.

    Configs saved by earlier runs hold ``training.warmup_ratio: null`` and must still resume; a number keeps its old
    meaning (it overrode the top-level value), with a warning that says what to write instead.
    """
    training = raw.get("training")
    if not isinstance(training, dict) or "warmup_ratio" not in training:
        return
    value = training.pop("warmup_ratio")
    if value is not None:
        logger.warning(
            "'training.warmup_ratio' is deprecated: the top-level warmup_ratio is the one warm-up setting; using "
            "warmup_ratio: %s (write it there and remove training.warmup_ratio)",
            value,
        )
        raw["warmup_ratio"] = value


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (never the unsafe loader)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass CONFIG=path/to/config.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}: fix its syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, not a {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b=value"`` into the dotted key and the YAML-parsed value."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not key=value: write e.g. SET=\"num_epochs=1 batch_size=16\"")
    stripped = value.strip()
    if "#" in stripped and stripped[0] not in "'\"[{":
        return key, value  # YAML would drop " #..." as a comment: on one line it is text ("Q #1: ")
    try:
        parsed = yaml.safe_load(value) if stripped else None
    except yaml.YAMLError:
        return key, value
    if isinstance(parsed, dict) and not stripped.startswith("{"):
        # "query: " reads as a mapping in YAML; on one line it is meant as text (a prompt). {a: 1} stays a mapping.
        return key, value
    return key, parsed


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for the key ``"a.b"``."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def options(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are options of their own (not the trainer-arguments passthrough)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("passthrough")]


def all_keys() -> list[str]:
    """Every valid dotted key, for did-you-mean suggestions and the reference (trainer arguments given under
    ``training:`` are the trainer's own: :func:`trainer_argument_types`)."""
    keys = []
    for f in options(RunConfig):
        if f.name in SECTIONS:
            keys.extend(f"{f.name}.{sub.name}" for sub in options(SECTIONS[f.name]))
        else:
            keys.append(f.name)
    return keys


# Trainer arguments embedft sets from its own options: one given under training: is refused with the key to set.
OWNED_TRAINER_ARGUMENTS = {
    "output_dir": "set output_dir (a run keeps its checkpoints in <run>/checkpoints)",
    "per_device_train_batch_size": "set batch_size",
    "per_device_eval_batch_size": "set batch_size",
    "num_train_epochs": "set num_epochs",
    "learning_rate": "set the top-level learning_rate",
    "weight_decay": "set the top-level weight_decay",
    "warmup_steps": "set the top-level warmup_ratio (a share of the optimizer steps)",
    "seed": "set the top-level seed",
    "data_seed": "set the top-level seed",
    "batch_sampler": "batches never hold a text twice (a repeated text would be its own negative)",
    "prompts": "set use_prompts, or query_prompt and document_prompt",
    "router_mapping": "each column is routed by the model's own Router module",
    "eval_strategy": "set training.eval_steps (null: no evaluation during training)",
    "save_strategy": "set training.save_steps",
    "use_cpu": "set device",
    "run_name": "set run_name",
    "activation_checkpointing": "set training.gradient_checkpointing",
    "gradient_checkpointing_kwargs": "set training.gradient_checkpointing",
    "activation_checkpointing_kwargs": "set training.gradient_checkpointing",
    "resume_from_checkpoint": "resume a run with --resume RUN (make train-embed RESUME=latest)",
    "logging_dir": "TensorBoard events go to <run>/tensorboard",
}


def trainer_argument_types() -> dict[str, Any]:
    """Every ``SentenceTransformerTrainingArguments`` field and its type annotation (Any where it cannot be
    resolved). Imports sentence-transformers, which takes seconds: called only for a key that is not embedft's own."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    try:
        hints = typing.get_type_hints(SentenceTransformerTrainingArguments)
    except Exception:  # an annotation this Python cannot evaluate: the arguments' constructor still checks values
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}


def trainer_argument(dotted: str, key: str, value: Any) -> Any:
    """A trainer argument given under ``training:``: refused when embedft sets it, its value checked against the
    field's type when that is a plain one (int, float, bool, str, or null); other values are checked by constructing
    the arguments (:func:`embedft.training.check_training_arguments`).

    Raises:
        ConfigError: embedft sets this argument itself, or the value has the wrong type.
    """
    if key in OWNED_TRAINER_ARGUMENTS:
        raise ConfigError(f"'{dotted}' is set by embedft from its own options: {OWNED_TRAINER_ARGUMENTS[key]}")
    annotation = trainer_argument_types()[key]
    plain = (int, float, bool, str, type(None))
    if annotation in plain or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and all(arg in plain for arg in typing.get_args(annotation))
    ):
        return coerce(dotted, value, annotation)
    return value


def build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Create ``cls`` from ``raw``, checking every key and value type; under ``training:`` a key that is not
    embedft's own but a field of the trainer's arguments goes to ``trainer_arguments``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in options(cls)}
    kwargs: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            if cls is TrainingConfig and (key in OWNED_TRAINER_ARGUMENTS or key in trainer_argument_types()):
                passthrough[key] = trainer_argument(dotted, key, value)
                continue
            raise ConfigError(unknown_key_message(str(dotted)))
        if key in SECTIONS and not prefix:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"'{dotted}' must be a section of keys (e.g. {dotted}:\\n  key: value)")
            kwargs[key] = build(SECTIONS[key], value, prefix=f"{key}.")
        else:
            kwargs[key] = coerce(dotted, value, hints[key])
    if passthrough:
        kwargs["trainer_arguments"] = passthrough
    return cls(**kwargs)


def unknown_key_message(dotted: str) -> str:
    """One line naming the unknown key and the closest valid ones; the trainer's argument names are candidates too
    (as ``training.<name>``) for a key under ``training:`` or one close to none of embedft's own."""
    candidates = all_keys()
    leaf = dotted.rsplit(".", 1)[-1]
    if dotted.startswith("training.") or not difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6):
        trainer = [f"training.{name}" for name in trainer_argument_types() if name not in OWNED_TRAINER_ARGUMENTS]
        candidates += [key for key in trainer if key not in candidates]
    close = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    if not close:
        close = [key for key in candidates if key.rsplit(".", 1)[-1] == leaf][:1]
    if not close:
        close = difflib.get_close_matches(leaf, candidates, n=1, cutoff=0.6)
    hint = f": did you mean '{close[0]}'?" if close else ": see docs/configuration.md"
    return f"unknown config key '{dotted}'{hint}"


def describe(annotation: Any) -> str:
    """A short human name for a type annotation."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return f"a list of {describe(typing.get_args(annotation)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}.get(
        annotation, str(annotation)
    )


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` as ``annotation`` or raise a ConfigError that names the key and the expected type."""
    ok, converted = _try_coerce(value, annotation)
    if not ok:
        raise ConfigError(f"'{key}' must be {describe(annotation)}, got {value!r}")
    return converted


def _try_coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return (value in typing.get_args(annotation)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            ok, converted = _try_coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return False, value
        items = [_try_coerce(item, item_type) for item in value]
        return all(ok for ok, _ in items), [converted for _, converted in items]
    if annotation is type(None):
        return value is None, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return math.isfinite(value), float(value)
            except OverflowError:  # an integer too large for a float
                return False, value
        # PyYAML reads 3e-5 (no dot) as a string; accept it as the number it clearly is.
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return False, value
            return math.isfinite(number), number
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    return isinstance(value, annotation), value


def validate(config: RunConfig) -> None:
    """Reject values that have the right type but cannot work, with the fix in the message."""
    positive = {
        "num_epochs": config.num_epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "temperature": config.temperature,
        "mining.batch_size": config.mining.batch_size,
        "mining.chunk_size": config.mining.chunk_size,
        "training.max_steps": config.training.max_steps,
        "training.mini_batch_size": config.training.mini_batch_size,
        "evaluation.batch_size": config.evaluation.batch_size,
    }
    for key, value in positive.items():
        if value is not None and value <= 0:
            raise ConfigError(f"'{key}' must be greater than 0, got {value}")
    if config.max_seq_length is not None and config.max_seq_length <= 0:
        raise ConfigError(f"'max_seq_length' must be greater than 0 or null, got {config.max_seq_length}")
    workers = config.training.dataloader_num_workers
    if workers < 0:
        raise ConfigError(f"'training.dataloader_num_workers' must be 0 or more, got {workers}")
    if config.sample_size is not None and config.sample_size <= 0:
        raise ConfigError(f"'sample_size' must be greater than 0 or null (all pairs), got {config.sample_size}")
    validate_data_options(config)
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
    for key, size in (("test_size", config.test_size), ("dev_size", config.dev_size)):
        if isinstance(size, float) and not 0 < size < 1:
            raise ConfigError(f"'{key}' as a fraction must lie in (0, 1), got {size}")
        if isinstance(size, int) and size < 1:
            raise ConfigError(f"'{key}' must be at least 1 held-out question, got {size}")
    if config.weight_decay < 0:
        raise ConfigError(f"'weight_decay' must be 0 or more, got {config.weight_decay}")
    if not 0 <= config.warmup_ratio < 1:
        raise ConfigError(f"'warmup_ratio' must lie in [0, 1), got {config.warmup_ratio}")
    validate_training_options(config.training)
    if config.training.fp16 and config.training.bf16:
        raise ConfigError("'training.fp16' and 'training.bf16' are both true: choose one (bf16 where the GPU has it)")
    if config.training.save_total_limit is not None and config.training.save_total_limit < 1:
        raise ConfigError("'training.save_total_limit' must be at least 1, or null to keep every checkpoint")
    if config.training.loss == "gist" and config.mining.num_negatives > 1:
        raise ConfigError(
            f"'training.loss' gist takes one negative per row and mining.num_negatives is "
            f"{config.mining.num_negatives}: use cached_gist, which takes any number, or mining.num_negatives: 1"
        )
    guide_key = "model_name" if config.training.guide_model == "base" else "mining_model_name"
    if config.training.loss in ("gist", "cached_gist") and getattr(config, guide_key).startswith("static:"):
        # Caught here, before mining, for static: names; a hub static model is refused once loaded (load_guide).
        fix = "set training.guide_model: base" if guide_key == "mining_model_name" else "use training.loss: mnrl"
        raise ConfigError(
            f"'training.loss' {config.training.loss} needs a guide with a transformers tokenizer, and {guide_key} "
            f"(training.guide_model: {config.training.guide_model}) is a static model: {fix}"
        )
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
    if not config.use_prompts and (config.query_prompt is not None or config.document_prompt is not None):
        raise ConfigError("query_prompt/document_prompt are set but use_prompts is false: drop one of them")
    if config.hub_model_id is not None and not re.match(r"^[\w.-]+/[\w.-]+$", config.hub_model_id):
        raise ConfigError(f"'hub_model_id' must be a hub repo id 'user/name', got {config.hub_model_id!r}")
    if not 1 <= config.tensorboard_port <= 65535:
        raise ConfigError(f"'tensorboard_port' must be a port number (1-65535), got {config.tensorboard_port}")


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
    given under ``training:`` are checked by constructing them, :func:`embedft.training.check_training_arguments`).
    """
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


# The columns flagembedding and tevatron rows hold their positives and negatives in.
FORMAT_COLUMNS = {"flagembedding": ("pos", "neg"), "tevatron": ("positive_passages", "negative_passages")}


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


# Hugging Face access tokens, and the password part of user:password@ in URLs.
SECRET_PATTERNS = (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"))
MASK = "***"


def mask_secrets(value: Any) -> Any:
    """``value`` with every token or URL credential inside its strings replaced by ``***``.

    No option holds a secret (hub access uses ``HF_TOKEN`` or ``hf auth login``), but a path or name may carry
    one pasted by mistake; the config saved with a run must not keep it.
    """
    if isinstance(value, str):
        for pattern in SECRET_PATTERNS:
            value = pattern.sub(MASK, value)
        return value
    if isinstance(value, dict):
        return {key: mask_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


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


def save_config(config: RunConfig, path: Path) -> None:
    """Write the resolved configuration as YAML, with secrets masked, so the run can be repeated exactly."""
    path.write_text(yaml.safe_dump(mask_secrets(config.to_dict()), sort_keys=False), encoding="utf-8")


def reference() -> str:
    """A Markdown table of every option: key, type, default and help."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def rows(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in options(cls):
            if f.name in SECTIONS and not prefix:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = default if isinstance(default, str) else json.dumps(default)
            lines.append(
                f"| `{prefix}{f.name}` | {describe(hints[f.name])} | `{shown}` | {f.metadata.get('help', '')} |"
            )

    rows(RunConfig, "")
    for name, cls in SECTIONS.items():
        rows(cls, f"{name}.")
    return "\n".join(lines)
