"""Every option of a run, with its type, default and help text: the schema documents itself (make config-reference)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"

PACKAGED_FAQ = "packaged:construction-faq"
# The losses whose in-batch negatives a frozen guide model filters (GISTEmbed).
GUIDED_LOSSES = ("gist", "cached_gist")


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
        "Hard negatives mined per training pair. 1: (query, answer, negative) triplets; k > 1: one (query, answer, "
        "negative_1, ..., negative_k) row per pair, and a pair that got fewer is left out (counted in the log and "
        "mining.json). 0: in-batch negatives only (the other answers of each batch); evaluation negatives are mined.",
    )
    given_negatives: Literal["mix", "use", "ignore"] = _option(
        "mix",
        "Negatives the data already has (flagembedding 'neg', tevatron 'negative_passages', negative_column), less "
        "any that is a positive of the question or an answer of a held-out question (counted in mining.json). 'mix': "
        "the given ones first, mined ones fill up to num_negatives. 'use': the given ones only; a pair with fewer "
        "than num_negatives is left out (counted). 'ignore': mine as if there were none. Of more than num_negatives "
        "given, sampling_strategy 'top' takes the first, 'random' a seeded sample (evaluation negatives: mined).",
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
    precision: Literal["auto", "bf16", "fp32"] = _option(
        "auto",
        "What the mining model encodes in: 'auto' is bf16 where mining.device computes in it natively (Ampere+ GPUs, "
        "CPUs with AVX512-BF16/AMX; about 1.8x faster there), else fp32.",
    )
    unmined_pairs: Literal["in_batch", "random_negative", "drop"] = _option(
        "in_batch",
        "Training pairs for which no candidate passes the filters (with num_negatives > 1: fewer than num_negatives "
        "do). 'in_batch': they still train, as (query, answer) rows whose only negatives are the batch's other "
        "answers (a second training dataset under the same loss). 'random_negative': each missing negative is a "
        "seeded random pool document ranked below range_max (an easy negative, never a positive). 'drop': left out. "
        "mining.json counts them.",
    )
    rounds: int = _option(
        1,
        "Rounds of mining and training. 2: train num_epochs / 2 epochs, mine the training pool again with that model "
        "(positive-aware: relative_margin 0.05 unless set, so its sharper false negatives are filtered), then train "
        "the rest from its weights (ANCE, RocketQA). The optimizer steps stay the same.",
    )


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
    logging_steps: int | float | Literal["auto"] = _option(
        "auto",
        "Log loss and learning rate every this many optimizer steps, or a share of the run's steps in (0, 1); 'auto': "
        "about 50 points a run, every step on a run of under 50 steps, at most every 10 steps.",
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
    directions: list[Literal["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]] = _option(
        ["query_to_doc"],
        "What the mnrl and cached_mnrl losses contrast (MultipleNegativesRankingLoss's directions): 'query_to_doc' "
        "(always; the query's answer against the other answers and negatives), 'doc_to_query' (the answer's query "
        "against the other queries), 'query_to_query', 'doc_to_doc'; all four, with partition_mode 'joint', is GTE's "
        "improved contrastive loss.",
    )
    partition_mode: Literal["joint", "per_direction"] = _option(
        "joint",
        "How the directions are normalised: 'joint', one softmax over all of them; 'per_direction', one each, "
        "averaged (not with query_to_query or doc_to_doc).",
    )
    hardness_mode: Literal["in_batch_negatives", "hard_negatives", "all_negatives"] | None = _option(
        None,
        "Weight harder negatives more in mnrl and cached_mnrl (adds hardness_strength * similarity to their logits): "
        "'in_batch_negatives' (Lan et al. 2025, strength 9), 'hard_negatives' (the mined ones; EmbeddingGemma, "
        "strength 5), 'all_negatives'; null: off.",
    )
    hardness_strength: float = _option(0.0, "Strength of hardness_mode (0 or more).")
    length_chunks: int | Literal["auto"] | None = _option(
        "auto",
        "Encode each text column of a training batch in length-sorted chunks of this many texts, each padded to its "
        "own longest (rounded up to 32 tokens): less padding, the same batches and loss. 'auto': 16 on the CPU "
        "(1.6x the steps/s on MiniLM, docs/benchmarks.md), whole columns on a GPU (unmeasured there); null: whole.",
    )
    best_on_dev: bool = _option(
        True,
        "With dev questions scored during training, the final model is the checkpoint with the best dev NDCG@10 "
        "(load_best_model_at_end; checkpoints are then saved at every evaluation and after the last step); false, "
        "or without dev questions: the last step.",
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
        2_000,
        "Documents ranked by the evaluation during training (and the merge's dev scores): every positive of the "
        "questions, their mined hard negatives, then a seeded random sample of the rest (the NanoBEIR recipe), small "
        "enough for ten dev evaluations a run on a CPU; null: the whole pool. Baseline and final rank the whole pool "
        "unless final_pool is 'bounded'.",
    )
    max_queries: int | None = _option(
        None,
        "Questions scored during training, a seeded sample; null: all of them. Baseline and final score every test "
        "question unless final_pool is 'bounded'.",
    )
    precision: Literal["auto", "bf16", "fp32"] = _option(
        "auto",
        "What baseline, final, the merge's dev scores and make eval-embed encode in, always the same for all of them: "
        "'auto' is bf16 where the device computes in it natively (Ampere+ GPUs, CPUs with AVX512-BF16/AMX), else "
        "fp32. metrics.json evaluation.precision records it. (Scores during training follow training.bf16.)",
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
        "Where the pairs come from: 'packaged:construction-faq' (shipped, offline), a local .jsonl/.json/.csv/.tsv/"
        ".parquet file (the text ones also as .gz, .bz2, .xz, .zst), a folder of them or a saved data set, or a hub "
        "name such as 'ayushexel/xyneft'.",
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
    data_format: Literal["auto", "pairs", "flagembedding", "tevatron", "beir"] = _option(
        "auto",
        "Row layout. 'pairs': one (query_column, answer_column) pair a row; a list of answers in answer_column gives "
        "one pair per answer. 'flagembedding': {query, pos: [...], neg: [...]} (FlagEmbedding's training jsonl). "
        "'tevatron': {query, positive_passages: [{docid, title, text}], negative_passages: [...]}, a passage read as "
        "title + ' ' + text (text alone when the title is empty). Each positive gives one pair; 'neg' and "
        "'negative_passages' are given negatives (mining.given_negatives). 'auto': pairs when answer_column is in the "
        "data, else tevatron when it has positive_passages, else flagembedding when it has pos. 'beir': dataset_name "
        "is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv): the train qrels train, the test "
        "qrels are the held-out questions, the dev qrels (when present) the dev questions, the corpus the pool; a "
        "qrel score of 0 is not a positive and higher scores are graded relevance.",
    )
    csv_delimiter: str | None = _option(
        None,
        "The column separator of a .csv/.tsv file (e.g. ';'); null: a tab for .tsv, else guessed from the first lines "
        "(',', ';', tab or '|'). Every cell is read as text.",
    )
    skip_wrong_types: bool = _option(
        False,
        "A row whose text column (query, answers, negatives, split_column) holds no text (an object, list, number or "
        "true/false) or whose relevance_column holds no whole number stops the run with its row; true: such rows are "
        "left out and counted (wrong_type_dropped).",
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
        "answer are held out together, with all their answers. With split_column or data_format: beir: caps the "
        "official test questions (null: all of them, as MTEB scores).",
    )
    dev_size: int | float | Literal["auto"] | None = _option(
        "auto",
        "Questions held out of the training side (like test_size) for evaluation during training, the choice of "
        "checkpoint (training.best_on_dev) and of merge_with_base, so the test questions are scored only before and "
        "after. 'auto': 5% of the training side's questions, at most 500, when it has at least 1,000 pairs (else "
        "none, and the report says why); null: none, step-wise scores use the test questions. A BEIR folder's dev "
        "qrels are the dev questions when it has them (dev_size then caps them).",
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
    drop_shared: Literal["questions", "questions_and_answers"] = _option(
        "questions",
        "With a given split (split_column, eval_dataset_name, data_format: beir): which training pairs leave the "
        "training side. 'questions': only those whose question is held out (the BEIR/MTEB protocol: documents are "
        "shared, so the whole corpus also serves as training negatives). 'questions_and_answers': also those whose "
        "answer answers a held-out question, and held-out answers are never training negatives. A random split "
        "holds out whole groups of questions that share answers, so it drops nothing.",
    )
    relevance_column: str | None = _option(
        None,
        "Column of pairs data holding a graded relevance (an integer, as BEIR qrels): rows of 0 or less are not "
        "pairs, and NDCG@10 uses the grades as MTEB does; null: every pair is relevant (binary NDCG).",
    )
    corpus_file: str | None = _option(
        None,
        "Extra documents for retrieval evaluation and mining: .jsonl rows with 'text' (optional 'title'), or .txt "
        "with one document per line. Those equal to an answer of a held-out question are never training negatives, "
        "unless a given split shares its documents (drop_shared: questions).",
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
    merge_with_base: float | Literal["auto", "off", False] = _option(  # YAML reads a bare off as false
        "auto",
        "Interpolate the trained weights with the base model's, w = (1 - a) * base + a * trained (WiSE-FT). 'auto': "
        "with dev questions, the best on them of a = 0.5, 0.7, 0.85, 1.0 (each recorded in metrics.json merge); "
        "without, off. A number in [0, 1]: that a. 'off': the trained model as it is.",
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
        "Push the final model to this hub repo ('user/name') when the run has finished (HF_TOKEN or 'hf auth login'); "
        "null: never. A failed push is one warning, and the local model is kept.",
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
