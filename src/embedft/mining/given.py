"""The negatives the data brought (FlagEmbedding ``neg``, Tevatron ``negative_passages``, a negative_column),
checked and filled up with mined ones.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, GIVEN_NEGATIVES, QUERY
from embedft.config.schema import MiningConfig
from embedft.data.rows import iter_pairs, iter_rows, text_digest
from embedft.errors import DataError
from embedft.mining.diagnostics import MiningOutcome, log_outcome
from embedft.mining.engine import mine
from embedft.mining.rows import rows_dataset
from embedft.mining.task import MiningTask
from embedft.mining.training_set import MinedTrainingSet
from embedft.models.embedding_cache import EmbeddingCache, cache_or_scratch

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class GivenNegatives:
    """The negatives the data brought (flagembedding ``neg``, tevatron ``negative_passages``, a negative_column):
    each training pair's usable ones, in the data's order, and what was dropped on the way (for ``mining.json``)."""

    lists: list[list[str]]  # per training row: stripped, distinct, never a positive or a held-out answer
    read: int = 0  # distinct non-empty given negatives over all training pairs
    dropped_positive: int = 0  # a positive of the pair's own question (any of its answers in the data)
    dropped_held_out: int = 0  # an answer of a test or dev question (it would leak evaluation answers)

    @property
    def pairs_with_given(self) -> int:
        return sum(1 for negatives in self.lists if negatives)


def read_given_negatives(train: Dataset, known_pairs: Dataset, held_out_answers: set[str]) -> GivenNegatives:
    """Each training pair's given negatives that may be trained on, counting the others.

    A given negative is dropped when it is a positive of the pair's question (one of its answers anywhere in
    ``known_pairs`` or ``train``: pushing it away would teach the model the opposite of the data), or an answer of a
    held-out question (``held_out_answers``: training on it would leak the evaluation answers). Negatives are
    stripped; empty ones and repeats within a pair are skipped without counting.

    Args:
        train: training pairs with ``query``, ``answer`` and ``given_negatives``.
        known_pairs: every known pair (all of the data, the evaluation file too).
        held_out_answers: the answers of the test and dev questions that must not be negatives (empty when a
            given split shares its documents, ``drop_shared: questions``).
    """
    train_queries = {text_digest(query) for query, _ in iter_pairs(train)}
    positives: dict[bytes, set[bytes]] = {}
    for pairs in (known_pairs, train):
        for query, answer in iter_pairs(pairs):
            key = text_digest(query)
            if key in train_queries:
                positives.setdefault(key, set()).add(text_digest(answer))
    held_out = {text_digest(answer) for answer in held_out_answers}
    given = GivenNegatives(lists=[])
    for query, negatives in iter_rows(train, QUERY, GIVEN_NEGATIVES):
        own = positives.get(text_digest(query), set())
        usable: list[str] = []
        for text in dict.fromkeys(text.strip() for text in negatives or [] if text and text.strip()):
            given.read += 1
            digest = text_digest(text)
            if digest in own:
                given.dropped_positive += 1
            elif digest in held_out:
                given.dropped_held_out += 1
            else:
                usable.append(text)
        given.lists.append(usable)
    return given


def choose_given(negatives: list[str], count: int, strategy: str, rng: random.Random) -> list[str]:
    """``count`` of a pair's given negatives: the first ones (``top``: the data's order, usually hardest first) or a
    seeded sample kept in the data's order (``random``); all of them when there are no more than ``count``."""
    if len(negatives) <= count:
        return negatives
    if strategy == "top":
        return negatives[:count]
    return [negatives[i] for i in sorted(rng.sample(range(len(negatives)), count))]


def given_negatives_training_set(
    train: Dataset,
    given: GivenNegatives,
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None = None,
    cache: EmbeddingCache | None = None,
    path: Path | None = None,
    pairs_path: Path | None = None,
) -> MinedTrainingSet:
    """Training rows from the data's own negatives, filled up with mined ones (``mining.given_negatives``).

    Each pair takes ``options.num_negatives`` of its given negatives (:func:`choose_given`). With ``use`` a pair
    that has fewer is left out and nothing is mined. With ``mix`` the questions that have a pair short of given
    negatives are mined (all their pairs, against the whole training pool: every training answer and
    ``extra_documents``, with the usual filters), and each short pair is filled up with its best mined negatives
    that are not already among its given ones; a pair still short trains as a (query, answer) pair with in-batch
    negatives only under ``mining.unmined_pairs: in_batch`` (saved to ``pairs_path``), else it is left out. The rows
    have the layout of mined ones: ``(query, answer, negative)``, or ``(query, answer, negative_1, ...,
    negative_k)``.

    Returns:
        The rows and the :class:`MiningDiagnostics`: pair counts over all training pairs, scores over the mined
        questions only, and the given-negative counts under ``given``.

    Raises:
        DataError: with ``use``, no pair has enough given negatives (there would be nothing to train on).
    """
    count = options.num_negatives
    rng = random.Random(seed)
    chosen = [choose_given(negatives, count, options.sampling_strategy, rng) for negatives in given.lists]
    outcome, mined, pairs_mined = MiningOutcome(search="none"), {}, 0
    if options.given_negatives == "mix" and any(len(negatives) < count for negatives in chosen):
        outcome, mined, pairs_mined = mine_short_questions(train, chosen, model, options, seed, extra_documents, cache)
    texts, filled, short = fill_rows(train, chosen, mined, count)
    if not texts and options.given_negatives == "use":
        raise DataError(
            f"no training pair has mining.num_negatives={count} given negatives (after dropping positives and "
            "held-out answers): lower mining.num_negatives or set mining.given_negatives: mix to mine the rest"
        )
    diagnostics = outcome.diagnostics(options)
    diagnostics.pairs = len(chosen)
    diagnostics.pairs_kept = len(texts)
    diagnostics.pairs_without_negative = filled["without"]
    diagnostics.pairs_too_few_negatives = filled["too_few"]
    kept_as_pairs = short if options.unmined_pairs == "in_batch" else []
    diagnostics.pairs_in_batch = len(kept_as_pairs)
    diagnostics.given = {
        "mode": options.given_negatives,
        "pairs_with_given": given.pairs_with_given,
        "pairs_with_enough_given": sum(1 for negatives in chosen if len(negatives) == count),
        "pairs_mined": pairs_mined,
        "read": given.read,
        "dropped_positive": given.dropped_positive,
        "dropped_held_out": given.dropped_held_out,
        "used": filled["used"],
        "mined_used": filled["mined_used"],
    }
    left_out = filled["without"] + filled["too_few"] - len(kept_as_pairs)
    if left_out:
        logger.warning(
            "%d of %d training pairs have fewer than mining.num_negatives=%d %s negatives and are left out%s",
            left_out,
            len(chosen),
            count,
            "given" if options.given_negatives == "use" else "given or mined",
            " (mining.given_negatives: mix fills them up by mining)" if options.given_negatives == "use" else "",
        )
    if kept_as_pairs:
        logger.info("%d training pairs short of negatives train as (query, answer) pairs", len(kept_as_pairs))
    logger.info("%s", diagnostics.summary())
    pairs = rows_dataset(kept_as_pairs, 0, pairs_path) if kept_as_pairs else None
    return MinedTrainingSet(rows_dataset(texts, count, path, empty=not texts), diagnostics, pairs)


def mine_short_questions(
    train: Dataset,
    chosen: list[list[str]],
    model: SentenceTransformer,
    options: MiningConfig,
    seed: int,
    extra_documents: list[str] | None,
    cache: EmbeddingCache | None,
) -> tuple[MiningOutcome, dict[tuple[str, str], list[str]], int]:
    """Mine the questions that have a pair short of given negatives: all their pairs, against the whole training
    pool (every training answer and ``extra_documents``), with the usual filters.

    Returns:
        The mining outcome, each mined pair's negatives best first (``{(query, answer): [...]}``), and the number
        of pairs mined.
    """
    queries = train[QUERY]
    short = {query for query, negatives in zip(queries, chosen) if len(negatives) < options.num_negatives}
    rows = [i for i, query in enumerate(queries) if query in short]
    subset = train.select(rows).select_columns([QUERY, ANSWER])
    others = train.select(sorted(set(range(len(train))) - set(rows)))[ANSWER] if len(rows) < len(train) else []
    task = MiningTask.from_dataset(subset, [*others, *(extra_documents or [])])
    with cache_or_scratch(cache) as cache:
        outcome = mine(task, model, options, cache, seed, "training", keep_short=True)
    log_outcome(outcome, options)
    mined: dict[tuple[str, str], list[str]] = {}
    for q, p, n in outcome.all_rows().tolist():
        mined.setdefault((task.queries[q], task.corpus[p]), []).append(task.corpus[n])
    return outcome, mined, len(subset)


def fill_rows(
    train: Dataset, chosen: list[list[str]], mined: dict[tuple[str, str], list[str]], count: int
) -> tuple[list[tuple[str, ...]], dict[str, int], list[tuple[str, str]]]:
    """Each pair's row of ``count`` negatives: its chosen given ones, a short pair filled up with its best mined
    negatives that are not already among them; a pair still short gets no row.

    Returns:
        The rows ``(query, answer, negative_1, ...)``, the counts: pairs short ``without`` any negative and with
        ``too_few``, given negatives ``used`` and mined ones used (``mined_used``), and the short pairs.
    """
    short: list[tuple[str, str]] = []
    texts: list[tuple[str, ...]] = []
    counts = {"without": 0, "too_few": 0, "used": 0, "mined_used": 0}
    for (query, answer), negatives in zip(iter_pairs(train), chosen):
        mined_here = 0
        if len(negatives) < count:
            fill = [text for text in mined.get((query, answer), []) if text not in negatives]
            mined_here = min(len(fill), count - len(negatives))
            negatives = [*negatives, *fill[:mined_here]]
        if len(negatives) < count:
            counts["without" if not negatives else "too_few"] += 1
            short.append((query, answer))
            continue
        counts["used"] += count - mined_here
        counts["mined_used"] += mined_here
        texts.append((query, answer, *negatives))
    return texts, counts, short
