"""The data stage of every command: load, clean, split and sample as the config says, into one
:class:`PreparedData`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, GIVEN_NEGATIVES, QUERY
from embedft.config.schema import RunConfig
from embedft.data.beir import SPLIT, read_beir_folder
from embedft.data.formats import to_pairs
from embedft.data.rows import (
    CleaningStats,
    clean_pairs,
    document_pool,
    graded_pairs,
    iter_rows,
    negatives_digest,
    pairs_digest,
)
from embedft.data.sources import load_corpus_file, load_rows
from embedft.data.split import (
    AUTO_DEV_MAX_QUESTIONS,
    SharedWithHeldOut,
    auto_dev_size,
    drop_shared,
    hold_out_questions,
    sample_pairs,
    sample_questions,
    split_by_column,
)
from embedft.data.values import GRADE, TEXT
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The data stage's output: the split, every known pair, and the document pools for retrieval and mining."""

    splits: DatasetDict  # train, test, and dev when dev_size is set
    all_pairs: Dataset  # every cleaned pair (before sampling): all answers of a question are relevant
    extra_documents: list[str]  # corpus_file (and BEIR corpus) documents that are nobody's positive
    stats: CleaningStats
    split: str = "random"  # how the held-out side was chosen: random, split_column, eval_dataset or beir
    shared: SharedWithHeldOut | None = None  # a given split: what its training side shared with the held-out side
    dev: str | None = None  # dev_size 'auto': how many dev questions it held out, or why none

    def protocol(self) -> dict[str, str]:
        """How the split was made, for ``metrics.json`` and the report: ``split``, ``drop_shared`` (the rule that
        ran) for a given split, and ``dev`` (what ``dev_size: auto`` chose)."""
        protocol = {"split": self.split, **({"drop_shared": self.shared.rule} if self.shared is not None else {})}
        return protocol | ({"dev": self.dev} if self.dev is not None else {})

    @property
    def shares_documents(self) -> bool:
        """Whether held-out answers may be training negatives: a given split under ``drop_shared: questions``,
        where the documents are one shared corpus and only the questions are held out."""
        return self.shared is not None and self.shared.rule == "questions"

    @cached_property
    def corpus(self) -> list[str]:
        """Every distinct answer of the data set (train and test) plus the extra documents."""
        return document_pool(self.all_pairs[ANSWER], self.extra_documents)

    @cached_property
    def held_out_answers(self) -> list[str]:
        """Every answer of a test or dev question, in order."""
        answers = [answer for name in ("test", "dev") if name in self.splits for answer in self.splits[name][ANSWER]]
        return list(dict.fromkeys(answers))

    @cached_property
    def protected_answers(self) -> set[str]:
        """The answers that are never training negatives, mined or given: the held-out answers, unless the
        documents are shared (:attr:`shares_documents`)."""
        return set() if self.shares_documents else set(self.held_out_answers)

    @cached_property
    def training_documents(self) -> list[str]:
        """The documents besides the training answers that may serve as training negatives: the extra documents
        that are not protected, and with shared documents the held-out answers too."""
        if self.shares_documents:
            return document_pool(self.held_out_answers, self.extra_documents)
        return [document for document in self.extra_documents if document not in self.protected_answers]

    @cached_property
    def trained_answers(self) -> set[str]:
        """The answers of the training pairs: a held-out question with one of them was trained on with another
        question (the score's ``seen_answers`` group)."""
        return set(self.splits["train"][ANSWER])

    @property
    def has_given_negatives(self) -> bool:
        """Whether the training pairs carry negatives from the data (flagembedding, tevatron, negative_column)."""
        return GIVEN_NEGATIVES in self.splits["train"].column_names

    @cached_property
    def fingerprint(self) -> dict[str, str]:
        """A hash of each split's pairs, saved with a run's mined triplets so they are never reused with another
        split (e.g. after the config or the data file changed, or from a run made by an older version); with given
        negatives also a hash of the training pairs' negatives, so changed negatives are never reused either."""
        digests = {name: pairs_digest(split[QUERY], split[ANSWER]) for name, split in self.splits.items()}
        if self.has_given_negatives:
            digests["train_given_negatives"] = negatives_digest(self.splits["train"])
        return digests

    def counts(self) -> dict[str, int]:
        """The sizes a person checks first, for the log and ``metrics.json``."""
        counts = {
            "rows_loaded": self.stats.rows_in,
            "wrong_type_dropped": self.stats.wrong_type_dropped,
            "empty_dropped": self.stats.empty_dropped,
            "duplicates_dropped": self.stats.duplicates_dropped,
            "train_overlap_dropped": self.shared.dropped if self.shared is not None else 0,
        }
        if self.shared is not None:
            counts["train_question_held_out_dropped"] = self.shared.question_dropped
            counts["train_pairs_sharing_an_answer"] = self.shared.answer_shared
        counts |= {
            "train_pairs": len(self.splits["train"]),
            "eval_pairs": len(self.splits["test"]),
            "eval_questions": len(set(self.splits["test"][QUERY])),
            "eval_answers": len(set(self.splits["test"][ANSWER])),  # distinct right answers: what a gain can show on
        }
        if "dev" in self.splits:
            counts["dev_pairs"] = len(self.splits["dev"])
            counts["dev_questions"] = len(set(self.splits["dev"][QUERY]))
        if self.has_given_negatives:
            counts["train_pairs_with_given_negatives"] = sum(
                1 for (negatives,) in iter_rows(self.splits["train"], GIVEN_NEGATIVES) if negatives
            )
        counts["retrieval_pool"] = len(self.corpus)
        counts["corpus_file_held_out"] = sum(
            1 for document in self.extra_documents if document in self.protected_answers
        )
        return counts


def load_raw_pairs(config: RunConfig, source: str, evaluation: bool = False) -> tuple[Dataset, int]:
    """Load ``source`` with the configured format, columns and split (``evaluation``: ``source`` is
    ``eval_dataset_name``, read with ``eval_dataset_config`` and ``eval_dataset_revision``), before cleaning; with
    ``relevance_column``, its grades read into ``relevance``. Also returns how many rows ``skip_wrong_types`` left
    out (a text column, ``split_column`` included, holding no text, or ``relevance_column`` no whole number)."""
    rows = load_rows(
        source,
        config.dataset_split,
        config.cache_dir,
        subset=config.eval_dataset_config if evaluation else config.dataset_config,
        revision=config.eval_dataset_revision if evaluation else config.dataset_revision,
        key="eval_dataset_name" if evaluation else "dataset_name",
        csv_delimiter=config.csv_delimiter,
    )
    checked = {config.relevance_column: GRADE} if config.relevance_column is not None else {}
    checked |= {config.split_column: TEXT} if config.split_column is not None else {}
    pairs, wrong = to_pairs(
        rows,
        config.data_format,
        config.query_column,
        config.answer_column,
        config.negative_column,
        source,
        checked=checked,
        skip_wrong_types=config.skip_wrong_types,
    )
    return (graded_pairs(pairs, config.relevance_column) if config.relevance_column is not None else pairs), wrong


def clean_and_log(pairs: Dataset, source: str, wrong_type_dropped: int = 0) -> tuple[Dataset, CleaningStats]:
    """:func:`clean_pairs`, with a log line of what was dropped from ``source`` (``wrong_type_dropped``: rows
    left out before, for a value of the wrong type)."""
    pairs, stats = clean_pairs(pairs, source, wrong_type_dropped)
    logger.info(
        "Loaded %d pairs from %s: dropped %d with an empty query or answer and %d duplicates%s, kept %d",
        stats.rows_in,
        source,
        stats.empty_dropped,
        stats.duplicates_dropped,
        f" (and left out {wrong_type_dropped} rows of the wrong type)" if wrong_type_dropped else "",
        stats.rows_out,
    )
    return pairs, stats


def load_clean_pairs(config: RunConfig, source: str, evaluation: bool = False) -> tuple[Dataset, CleaningStats]:
    """Load ``source`` (:func:`load_raw_pairs`), clean it, and log what was dropped."""
    pairs, wrong = load_raw_pairs(config, source, evaluation)
    return clean_and_log(pairs, source, wrong)


def retrieval_pool(config: RunConfig) -> list[str]:
    """The documents a run ranks, without splitting: every answer of the data (and eval data) plus corpus_file,
    or a BEIR folder's whole corpus."""
    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    if config.data_format == "beir":
        folder = read_beir_folder(config.dataset_name)
        return document_pool(folder.pairs[ANSWER], [*folder.documents, *extra])
    sources = [(config.dataset_name, False), *([(config.eval_dataset_name, True)] if config.eval_dataset_name else [])]
    answers = [
        answer for source, evaluation in sources for answer in load_clean_pairs(config, source, evaluation)[0][ANSWER]
    ]
    return document_pool(answers, extra)


def given_sides(config: RunConfig) -> tuple[dict[str, Dataset], CleaningStats, list[str]]:
    """The sides of a given split, each cleaned on its own (so cleaning never moves a pair across the split): train
    and test, and dev from a BEIR folder's dev qrels; with the documents the source brings besides its pairs."""
    wrong = dict.fromkeys(("train", "test", "dev"), 0)  # rows left out for a wrong type, counted once
    documents: list[str] = []
    if config.data_format == "beir":
        folder = read_beir_folder(config.dataset_name)
        sides = split_by_column(folder.pairs, SPLIT, "train", "test", dev_value="dev")
        documents = folder.documents
    elif config.eval_dataset_name is not None:
        train, wrong["train"] = load_raw_pairs(config, config.dataset_name)
        test, wrong["test"] = load_raw_pairs(config, config.eval_dataset_name, evaluation=True)
        sides = {"train": train, "test": test}
    else:
        raw, wrong["train"] = load_raw_pairs(config, config.dataset_name)  # of the whole file, before its split
        sides = split_by_column(raw, config.split_column, config.train_split_value, config.test_split_value)
    cleaned: dict[str, Dataset] = {}
    stats: list[CleaningStats] = []
    for name, side in sides.items():
        source = config.eval_dataset_name if name == "test" and config.eval_dataset_name else config.dataset_name
        cleaned[name], side_stats = clean_and_log(side, f"{source} ({name})", wrong[name])
        stats.append(side_stats)
    return cleaned, CleaningStats.total(stats), documents


def split_kind(config: RunConfig) -> str:
    """How ``config`` chooses the held-out side: ``beir``, ``eval_dataset``, ``split_column`` or ``random``."""
    if config.data_format == "beir":
        return "beir"
    if config.eval_dataset_name is not None:
        return "eval_dataset"
    return "split_column" if config.split_column is not None else "random"


def prepare_data(config: RunConfig) -> PreparedData:
    """Load, clean, split and sample as ``config`` says: the data stage of every command, so all see one split.

    The evaluation split is, in order of precedence: a BEIR folder's test qrels (``data_format: beir``),
    ``eval_dataset_name`` (a separate file or data set), the rows of ``split_column`` equal to ``test_split_value``,
    or ``test_size`` seeded random questions held out by connected groups (questions that share an answer stay
    together). A given split is cleaned side by side and its held-out side is never changed by cleaning; training
    pairs that share a question with it (or, under ``drop_shared: questions_and_answers``, also an answer) are
    dropped and counted. ``dev_size`` questions are then held out of the training side (a BEIR folder's dev qrels
    come first), and ``sample_size`` training pairs are drawn last, so neither changes the evaluation set.
    """
    from datasets import DatasetDict, concatenate_datasets

    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    kind = split_kind(config)
    shared = None
    if kind == "random":
        all_pairs, stats = load_clean_pairs(config, config.dataset_name)
        if config.test_size is None:
            raise DataError("test_size is null but there is no split_column or eval_dataset_name: set test_size")
        train, test = hold_out_questions(all_pairs, config.test_size, config.seed)
        splits = {"test": test}
    else:
        sides, stats, documents = given_sides(config)
        extra = list(dict.fromkeys([*documents, *extra]))
        common = [c for c in sides["train"].column_names if all(c in side.column_names for side in sides.values())]
        all_pairs = concatenate_datasets([side.select_columns(common) for side in sides.values()])
        splits = {"test": sides["test"]}
        if kind != "eval_dataset":  # the data's own test split: test_size caps its questions (null: all)
            splits["test"] = sample_questions(sides["test"], config.test_size, config.seed)
        if "dev" in sides:
            dev_size = AUTO_DEV_MAX_QUESTIONS if config.dev_size == "auto" else config.dev_size
            splits["dev"] = sample_questions(sides["dev"], dev_size, config.seed, key="dev_size")
        train, shared = drop_shared(sides["train"], list(splits.values()), config.drop_shared)
    dev_note = None
    if config.dev_size is not None and "dev" not in splits:
        dev_size, dev_note = auto_dev_size(train) if config.dev_size == "auto" else (config.dev_size, None)
        if dev_size is not None:
            train, splits["dev"] = hold_out_questions(train, dev_size, config.seed, key="dev_size")
    splits["train"] = sample_pairs(train, config.sample_size, config.seed)
    data = PreparedData(
        splits=DatasetDict({name: splits[name] for name in ("train", "dev", "test") if name in splits}),
        all_pairs=all_pairs,
        extra_documents=extra,
        stats=stats,
        split=kind,
        shared=shared,
        dev=dev_note,
    )
    log_split(config, data)
    return data


def log_split(config: RunConfig, data: PreparedData) -> None:
    """The split's sizes, and where the extra documents went, in the log."""
    counts = data.counts()
    logger.info(
        "Split (%s, seed %d): %d train pairs, %d eval pairs (%d questions)%s",
        data.split,
        config.seed,
        counts["train_pairs"],
        counts["eval_pairs"],
        counts["eval_questions"],
        f", {counts['dev_pairs']} dev pairs ({counts['dev_questions']} questions)" if "dev" in data.splits else "",
    )
    if data.dev is not None:
        logger.info("dev_size auto: %s", data.dev)
    if not data.extra_documents:
        return
    source = config.dataset_name if data.split == "beir" else config.corpus_file
    if data.shares_documents:
        logger.info(
            "Added %d documents from %s to the retrieval pool, all of them also training negatives (drop_shared: "
            "questions shares the corpus)",
            len(data.extra_documents),
            source,
        )
    else:
        logger.info(
            "Added %d documents from %s to the retrieval pool (%d of them to the training negatives: the others "
            "are answers of held-out questions)",
            len(data.extra_documents),
            source,
            len(data.training_documents),
        )
