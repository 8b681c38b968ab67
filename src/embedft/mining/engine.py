"""mine_hard_negatives' filters over a search that scales: every query against the whole pool, a chunk at a time."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from embedft.config.schema import MiningConfig
from embedft.errors import ConfigError
from embedft.mining.diagnostics import MiningOutcome, row_similarities
from embedft.mining.search import CandidateSearch, build_search, normalize
from embedft.mining.task import MiningTask
from embedft.models.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


def library_excludes_query_text() -> bool:
    """Whether the installed mine_hard_negatives never takes a document whose text is the query itself as its
    negative, and searches one candidate more to make room for it (sentence-transformers 6.3 and newer).

    embedft follows the installed library's rule, so that its rows stay the library's rows (the parity test in
    tests/test_mining.py): sentence-transformers 6.2 searched ``range_max + max_positives`` candidates, 6.3 searches
    ``range_max + max_positives + 1``. With ``sampling_strategy: random`` that extra candidate changes which rows
    have enough valid candidates, and so the draws.
    """
    import sentence_transformers
    from packaging.version import Version

    return Version(sentence_transformers.__version__) >= Version("6.3.0.dev0")


def candidate_width(range_max: int, max_positives: int) -> int:
    """How many candidates the search retrieves per query, as the installed mine_hard_negatives does: ``range_max``
    plus room for the query's positives (and, from sentence-transformers 6.3 on, for the query's own text)."""
    return range_max + max_positives + (1 if library_excludes_query_text() else 0)


def derived_range_max(options: MiningConfig, max_positives: int) -> int:
    """The ``range_max`` mine_hard_negatives derives when it is given none (sentence-transformers 6.2's formula):
    ten candidates per negative when filters may skip some, else one; plus room for positives and range_min."""
    filtered = options.margin is not None or options.relative_margin is not None or options.max_score is not None
    return options.range_min + options.num_negatives * (10 if filtered else 1) + max_positives


def select_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positives: list[list[int]],
    positive_scores: list[torch.Tensor],
    options: MiningConfig,
    range_max: int,
    outcome: MiningOutcome,
    query_documents: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply mine_hard_negatives' filters to one block of ranked candidates, exactly as the library does.

    The query's positives and padding are excluded, and so is the document whose text is the query itself
    (``query_documents``, -1 for none; pass it only where the installed library excludes it,
    :func:`library_excludes_query_text`); the absolute and relative margins compare with the query's
    lowest positive score; then max_score and min_score; the best ``range_max`` remain, the first ``range_min`` are
    skipped, and ``num_negatives`` are taken from the top or drawn with Python's ``random`` (one draw per query, in
    order, as the library draws them).

    Returns:
        Negative scores and corpus indices, ``[queries, num_negatives]``, best first; -inf marks a missing one.
    """
    import torch

    scores[indices == -1] = -float("inf")
    if query_documents is not None:
        scores[indices == torch.tensor(query_documents, dtype=indices.dtype).unsqueeze(1)] = -float("inf")
    # Each query's positives as a padded [queries, most positives] matrix (-2 never matches an index).
    counts = np.array([len(own) for own in positives])
    padded = np.full((len(positives), counts.max()), -2, dtype=np.int64)
    owner = np.repeat(np.arange(len(positives)), counts)
    padded[owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)] = [
        index for own in positives for index in own
    ]
    positive_mask = (indices.unsqueeze(2) == torch.from_numpy(padded).unsqueeze(1)).any(dim=2)
    scores[positive_mask] = -float("inf")
    outcome.candidates += int(torch.isfinite(scores).sum())

    def drop(name: str, removed: torch.Tensor) -> None:
        removed &= torch.isfinite(scores)
        outcome.skipped[name] = outcome.skipped.get(name, 0) + int(removed.sum())
        scores[removed] = -float("inf")

    if options.margin is not None or options.relative_margin is not None:
        lowest_positive = torch.stack([own.min() for own in positive_scores]).unsqueeze(1)
        if options.margin is not None:
            drop("absolute_margin", scores + options.margin > lowest_positive)
        if options.relative_margin is not None:
            drop("relative_margin", scores > lowest_positive - lowest_positive.abs() * options.relative_margin)
    if options.max_score is not None:
        drop("max_score", scores > options.max_score)
    if options.min_score is not None:
        drop("min_score", scores < options.min_score)

    batch = torch.arange(len(positives)).unsqueeze(-1)
    negative_scores, local = torch.topk(scores, k=range_max, dim=1)
    negative_indices = indices[batch, local][:, options.range_min :]
    negative_scores = negative_scores[:, options.range_min :]
    if options.sampling_strategy == "top":
        return negative_scores[:, : options.num_negatives], negative_indices[:, : options.num_negatives]
    choices = (negative_indices.size(1) - negative_scores.isinf().sum(1)).clamp(min=options.num_negatives)
    drawn = [random.sample(range(count), k=options.num_negatives) for count in choices.tolist()]
    negative_scores, negative_indices = negative_scores[batch, drawn], negative_indices[batch, drawn]
    negative_scores, order = negative_scores.sort(dim=1, descending=True)
    return negative_scores, negative_indices[batch, order]


def random_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    candidates: np.ndarray,
    excluded: list[list[int]],
    start: int,
    corpus_size: int,
    seed: int,
) -> torch.Tensor:
    """Fill each query's missing negatives (``-inf`` in ``scores``) with pool documents drawn at random, in place.

    A drawn document is never one of the query's ``excluded`` documents (its positives and its own text) nor among
    its retrieved ``candidates`` (the candidate window ``range_max`` and the room for positives): it ranks below
    the window, so it is an easy negative and almost surely not an unlabelled positive. Each query draws from its
    own generator, seeded with ``seed`` and its index in the task, so the draws do not depend on the chunk size. A
    query whose pool has no document left keeps its gap.

    Returns:
        A ``[queries, num_negatives]`` mask of the negatives drawn.
    """
    import torch

    missing = ~torch.isfinite(scores)
    for row in torch.nonzero(missing.any(dim=1)).flatten().tolist():
        taken = {*candidates[row].tolist(), *excluded[row]}
        rng = np.random.default_rng([seed, start + row])
        slots = torch.nonzero(missing[row]).flatten().tolist()
        for _ in range(100 * len(slots)):
            if not slots:
                break
            document = int(rng.integers(corpus_size))
            if document not in taken:
                taken.add(document)
                indices[row, slots.pop(0)] = document
        for slot in slots:  # nothing left to draw: the gap stays
            missing[row, slot] = False
    return missing


def random_scores(
    encoded: EncodedTask, query_vectors: np.ndarray, indices: torch.Tensor, drawn: torch.Tensor
) -> torch.Tensor:
    """The query-document cosine of each drawn negative, for the mining diagnostics."""
    import torch

    rows, slots = torch.nonzero(drawn, as_tuple=True)
    documents = encoded.document_rows(indices[rows, slots].numpy())
    return torch.from_numpy(np.einsum("ij,ij->i", query_vectors[rows.numpy()], documents)).to(torch.float32)


def checked_range_max(options: MiningConfig, task: MiningTask, description: str) -> int:
    """``mining.range_max``, or the one mine_hard_negatives derives when it is null.

    Raises:
        ConfigError: the window leaves fewer than ``num_negatives`` candidates after ``range_min``.
    """
    range_max = options.range_max
    if range_max is None:
        range_max = derived_range_max(options, task.max_positives)
        # Evaluation negatives always take the hardest wrong answer: only a configured null is worth a line.
        logger.log(
            logging.DEBUG if description == "evaluation" else logging.INFO,
            "mining.range_max is null: using %d for %s",
            range_max,
            description,
        )
    if options.range_min >= range_max or options.num_negatives > range_max - options.range_min:
        raise ConfigError(
            f"mining.range_max={range_max} leaves fewer than num_negatives={options.num_negatives} candidates after "
            f"range_min={options.range_min}: raise mining.range_max or lower range_min / num_negatives"
        )
    return range_max


class EncodedTask:
    """A mining task's texts encoded once through the embedding cache, read back normalised a block at a time.

    Documents go through ``encode_document``, queries through ``encode_query``; only the texts' keys stay in memory.
    """

    def __init__(
        self, task: MiningTask, model: SentenceTransformer, cache: EmbeddingCache, batch_size: int, description: str
    ) -> None:
        self.task = task
        self.documents = cache.store(model, "document")
        self.document_keys = self.documents.encode(
            model, task.corpus, "document", batch_size, f"Encoding the {description} pool"
        )
        self.queries = cache.store(model, "query")
        self.query_keys = self.queries.encode(
            model, task.queries, "query", batch_size, f"Encoding the {description} queries"
        )

    def document_vectors(self, start: int, end: int) -> np.ndarray:
        """Documents ``start..end-1`` of the pool."""
        return normalize(self.documents.gather(self.task.corpus[start:end], self.document_keys[start:end]))

    def document_rows(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """The documents with these pool indices, in their order."""
        ids = np.asarray(ids, dtype=np.int64)
        return normalize(self.documents.gather([self.task.corpus[i] for i in ids.tolist()], self.document_keys[ids]))

    def query_vectors(self, start: int, end: int) -> np.ndarray:
        """Queries ``start..end-1``."""
        return normalize(self.queries.gather(self.task.queries[start:end], self.query_keys[start:end]))


def mine(
    task: MiningTask,
    model: SentenceTransformer,
    options: MiningConfig,
    cache: EmbeddingCache,
    seed: int,
    description: str = "mining",
    keep_short: bool = False,
    unmined: str = "drop",
) -> MiningOutcome:
    """Mine negatives for every query of ``task`` against its whole corpus.

    Texts are encoded once through ``cache`` (:class:`EncodedTask`); candidates come from an exact search, or an
    approximate one above ``options.exact_search_limit`` documents (:func:`~embedft.mining.search.build_search`);
    then :func:`select_negatives` filters them. Queries are handled ``options.chunk_size`` at a time, so memory stays
    bounded; the result does not depend on the chunk size.

    With ``options.num_negatives > 1`` a (query, positive) pair keeps its rows only when all its negatives were
    found, as mine_hard_negatives' n-tuple format does. The outcome also counts the pairs left out and keeps the
    scores :meth:`MiningOutcome.diagnostics` summarises. ``keep_short`` keeps the rows of such pairs too (counted
    all the same), for given negatives to be filled up with them.

    ``unmined`` (``mining.unmined_pairs``, training mining only) says what becomes of a pair short of negatives:
    ``drop`` leaves it out; ``in_batch`` keeps it as a (query, positive) pair in :attr:`MiningOutcome.unmined`;
    ``random_negative`` fills its missing negatives with seeded random pool documents ranked below the candidate
    window (:func:`random_negatives`). The pair counts are those before the fill either way.
    """
    outcome = MiningOutcome()
    if not task.queries:
        return outcome
    outcome.range_max = checked_range_max(options, task, description)
    encoded = EncodedTask(task, model, cache, options.batch_size, description)
    search = build_search(
        len(task.corpus), encoded.document_vectors, options.exact_search_limit, seed, len(task.queries)
    )
    outcome.search = search.kind
    # mine_hard_negatives draws sampling_strategy='random' from Python's global generator: seed it for this run and
    # give the caller's state back afterwards.
    outer_state = random.getstate()
    random.seed(seed)
    try:
        for start in tqdm(
            range(0, len(task.queries), options.chunk_size), desc=f"Searching ({search.kind})", unit="chunk"
        ):
            end = min(start + options.chunk_size, len(task.queries))
            mine_chunk(encoded, search, start, end, options, outcome, keep_short, unmined, seed)
    finally:
        random.setstate(outer_state)
    return outcome


def mine_chunk(
    encoded: EncodedTask,
    search: CandidateSearch,
    start: int,
    end: int,
    options: MiningConfig,
    outcome: MiningOutcome,
    keep_short: bool,
    unmined: str = "drop",
    seed: int = 0,
) -> None:
    """Mine queries ``start..end-1`` and add their rows, counts and scores to ``outcome`` (``unmined``: see
    :func:`mine`)."""
    import torch

    task = encoded.task
    query_vectors = encoded.query_vectors(start, end)
    scores, indices = search.search(query_vectors, candidate_width(outcome.range_max, task.max_positives))
    positives = task.positives[start:end]
    flat = [index for own in positives for index in own]
    positive_vectors = encoded.document_rows(flat)
    # The chunk's query of each (query, positive) pair, in pair order.
    owners = np.repeat(np.arange(len(positives)), [len(own) for own in positives])
    flat_scores = torch.from_numpy(np.einsum("ij,ij->i", query_vectors[owners], positive_vectors))
    negative_scores, negative_indices = select_negatives(
        torch.from_numpy(scores),
        torch.from_numpy(indices),
        positives,
        list(torch.split(flat_scores, [len(own) for own in positives])),
        options,
        outcome.range_max,
        outcome,
        task.query_documents[start:end] if library_excludes_query_text() else None,
    )
    # One row per (query, positive, found negative), in the library's order: query, positive, negative.
    found = torch.isfinite(negative_scores).numpy()[owners]  # [pairs, num_negatives]
    width_found = found.shape[1]
    found_count = found.sum(axis=1)
    outcome.pairs += len(owners)
    outcome.pairs_without_negative += int((found_count == 0).sum())
    short = (found_count > 0) & (found_count < options.num_negatives)
    outcome.pairs_too_few_negatives += int(short.sum())
    if unmined == "in_batch":
        left_out = found_count < options.num_negatives
        outcome.unmined.append(np.stack([start + owners[left_out], np.asarray(flat, dtype=np.int64)[left_out]], 1))
    elif unmined == "random_negative" and (found_count < options.num_negatives).any():
        excluded = [[*own, task.query_documents[start + row]] for row, own in enumerate(positives)]
        drawn = random_negatives(negative_scores, negative_indices, indices, excluded, start, len(task.corpus), seed)
        if drawn.any():
            negative_scores[drawn] = random_scores(encoded, query_vectors, negative_indices, drawn)
        outcome.random_negatives += int(drawn.numpy()[owners].sum())
        outcome.pairs_random_negatives += int(drawn.numpy()[owners].any(axis=1).sum())
        found = torch.isfinite(negative_scores).numpy()[owners]
        found_count = found.sum(axis=1)
    negatives = negative_indices.numpy()[owners]
    if options.num_negatives > 1 and not keep_short:
        # n-tuple rows need every negative: like mine_hard_negatives, drop pairs that got fewer.
        found &= (found_count == options.num_negatives)[:, None]
    block = np.stack(
        [
            np.repeat(start + owners, width_found),
            np.repeat(np.asarray(flat, dtype=np.int64), width_found),
            negatives.reshape(-1),
        ],
        axis=1,
    )
    kept = found.reshape(-1)
    outcome.rows.append(block[kept])
    outcome.positive_scores.append(flat_scores.numpy().astype(np.float32))
    outcome.negative_scores.append(negative_scores.numpy()[owners].reshape(-1)[kept].astype(np.float32))
    pair_of_row = np.repeat(np.arange(len(owners)), width_found)[kept]
    outcome.positive_negative.append(
        row_similarities(positive_vectors, pair_of_row, negatives.reshape(-1)[kept], encoded.document_rows)
    )
