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
from embedft.data.rows import CleaningStats, clean_pairs, document_pool, iter_rows, negatives_digest, pairs_digest
from embedft.data.sources import load_corpus_file, load_pairs
from embedft.data.split import drop_overlap, hold_out_questions, sample_pairs, sample_questions, split_by_column
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The data stage's output: the split, every known pair, and the document pools for retrieval and mining."""

    splits: DatasetDict  # train, test, and dev when dev_size is set
    all_pairs: Dataset  # every cleaned pair (before sampling): all answers of a question are relevant
    extra_documents: list[str]  # corpus_file documents, nobody's positive
    stats: CleaningStats
    overlap_dropped: int = 0  # training pairs dropped because a text of theirs is held out (given splits)

    @cached_property
    def corpus(self) -> list[str]:
        """Every distinct answer of the data set (train and test) plus the extra documents."""
        return document_pool(self.all_pairs[ANSWER], self.extra_documents)

    @cached_property
    def held_out_answers(self) -> set[str]:
        """Every answer of a test or dev question: never a training negative, mined or given."""
        return {answer for name in ("test", "dev") if name in self.splits for answer in self.splits[name][ANSWER]}

    @cached_property
    def training_documents(self) -> list[str]:
        """The extra documents that may serve as training negatives: never an answer of a held-out question."""
        return [document for document in self.extra_documents if document not in self.held_out_answers]

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
            "empty_dropped": self.stats.empty_dropped,
            "duplicates_dropped": self.stats.duplicates_dropped,
            "train_overlap_dropped": self.overlap_dropped,
            "train_pairs": len(self.splits["train"]),
            "eval_pairs": len(self.splits["test"]),
            "eval_questions": len(set(self.splits["test"][QUERY])),
        }
        if "dev" in self.splits:
            counts["dev_pairs"] = len(self.splits["dev"])
            counts["dev_questions"] = len(set(self.splits["dev"][QUERY]))
        if self.has_given_negatives:
            counts["train_pairs_with_given_negatives"] = sum(
                1 for (negatives,) in iter_rows(self.splits["train"], GIVEN_NEGATIVES) if negatives
            )
        counts["retrieval_pool"] = len(self.corpus)
        counts["corpus_file_held_out"] = len(self.extra_documents) - len(self.training_documents)
        return counts


def load_clean_pairs(config: RunConfig, source: str, evaluation: bool = False) -> tuple[Dataset, CleaningStats]:
    """Load ``source`` with the configured format, columns and split, clean it, and log what was dropped.

    ``evaluation``: ``source`` is ``eval_dataset_name``, read with ``eval_dataset_config`` and
    ``eval_dataset_revision`` (else ``dataset_config`` and ``dataset_revision``).
    """
    pairs = load_pairs(
        source,
        config.query_column,
        config.answer_column,
        config.dataset_split,
        config.cache_dir,
        data_format=config.data_format,
        negative_column=config.negative_column,
        subset=config.eval_dataset_config if evaluation else config.dataset_config,
        revision=config.eval_dataset_revision if evaluation else config.dataset_revision,
        key="eval_dataset_name" if evaluation else "dataset_name",
    )
    pairs, stats = clean_pairs(pairs)
    logger.info(
        "Loaded %d pairs from %s: dropped %d with an empty query or answer and %d duplicates, kept %d",
        stats.rows_in,
        source,
        stats.empty_dropped,
        stats.duplicates_dropped,
        stats.rows_out,
    )
    return pairs, stats


def retrieval_pool(config: RunConfig) -> list[str]:
    """The documents a run ranks, without splitting: every answer of the data (and eval data) plus corpus_file."""
    sources = [(config.dataset_name, False), *([(config.eval_dataset_name, True)] if config.eval_dataset_name else [])]
    answers = [
        answer for source, evaluation in sources for answer in load_clean_pairs(config, source, evaluation)[0][ANSWER]
    ]
    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    return document_pool(answers, extra)


def prepare_data(config: RunConfig) -> PreparedData:
    """Load, clean, split and sample as ``config`` says: the data stage of every command, so all see one split.

    The evaluation split is, in order of precedence: ``eval_dataset_name`` (a separate file or data set), the rows
    of ``split_column`` equal to ``test_split_value``, or ``test_size`` seeded random questions held out by
    connected groups (questions that share an answer stay together). A given split can share texts with the
    training side: those training pairs are dropped and counted. ``dev_size`` questions are then held out of the
    training side, and ``sample_size`` training pairs are drawn last, so neither changes the evaluation set.
    """
    from datasets import DatasetDict, concatenate_datasets

    pairs, stats = load_clean_pairs(config, config.dataset_name)
    all_pairs = pairs
    overlap_dropped = 0
    if config.eval_dataset_name is not None:
        test, _ = load_clean_pairs(config, config.eval_dataset_name, evaluation=True)
        common = [c for c in pairs.column_names if c in test.column_names]
        all_pairs = concatenate_datasets([pairs.select_columns(common), test.select_columns(common)])
        train, overlap_dropped = drop_overlap(pairs, test)
    elif config.split_column is not None:
        official = split_by_column(pairs, config.split_column, config.train_split_value, config.test_split_value)
        test = sample_questions(official["test"], config.test_size, config.seed)
        train, overlap_dropped = drop_overlap(official["train"], test)
    else:
        if config.test_size is None:
            raise DataError("test_size is null but there is no split_column or eval_dataset_name: set test_size")
        train, test = hold_out_questions(pairs, config.test_size, config.seed)
    splits = {"test": test}
    if config.dev_size is not None:
        train, splits["dev"] = hold_out_questions(train, config.dev_size, config.seed, key="dev_size")
    splits["train"] = sample_pairs(train, config.sample_size, config.seed)
    extra = load_corpus_file(config.corpus_file) if config.corpus_file is not None else []
    data = PreparedData(
        splits=DatasetDict({name: splits[name] for name in ("train", "dev", "test") if name in splits}),
        all_pairs=all_pairs,
        extra_documents=extra,
        stats=stats,
        overlap_dropped=overlap_dropped,
    )
    counts = data.counts()
    logger.info(
        "Split (seed %d): %d train pairs, %d eval pairs (%d questions)%s",
        config.seed,
        counts["train_pairs"],
        counts["eval_pairs"],
        counts["eval_questions"],
        f", {counts['dev_pairs']} dev pairs ({counts['dev_questions']} questions)" if "dev" in splits else "",
    )
    if extra:
        logger.info(
            "Added %d documents from %s to the retrieval pool (%d of them to the training negatives: the others "
            "are answers of held-out questions)",
            len(extra),
            config.corpus_file,
            len(data.training_documents),
        )
    return data
