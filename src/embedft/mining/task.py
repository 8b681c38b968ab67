"""What a mining call works on: the distinct queries, the pool, and each query's positives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from embedft.data.rows import iter_pairs, text_digest

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class MiningTask:
    """What mine_hard_negatives derives from its pairs: the distinct queries, the distinct documents (the pool,
    then any positive not in it) and, per query, the documents that are its positives."""

    queries: list[str]
    corpus: list[str]
    positives: list[list[int]]  # corpus indices, each query's distinct positives in first-seen order
    max_positives: int  # the most rows any query has (duplicate rows counted, as the library counts them)
    # Per query, the corpus index of the document whose text is the query itself, or -1 when there is none.
    query_documents: list[int] = field(default_factory=list)

    @classmethod
    def from_pairs(cls, queries: list[str], answers: list[str], pool: list[str]) -> MiningTask:
        corpus = list(dict.fromkeys([*pool, *answers]))
        corpus_index = {text: index for index, text in enumerate(corpus)}
        query_index: dict[str, int] = {}
        positives: list[list[int]] = []
        for query, answer in zip(queries, answers):
            if query not in query_index:
                query_index[query] = len(positives)
                positives.append([])
            own = positives[query_index[query]]
            if corpus_index[answer] not in own:
                own.append(corpus_index[answer])
        return cls(
            list(query_index),
            corpus,
            positives,
            max(Counter(queries).values()) if queries else 0,
            [corpus_index.get(query, -1) for query in query_index],
        )

    @classmethod
    def from_dataset(
        cls, pairs: Dataset, extra_documents: list[str] | None = None, texts: list[str] | None = None
    ) -> MiningTask:
        """:meth:`from_pairs` with the pool made of the pairs' answers, then ``extra_documents``, reading the pairs a
        batch at a time.

        Args:
            pairs: rows with ``query`` and ``answer``.
            extra_documents: documents that are nobody's positive.
            texts: strings already in memory that include every answer (e.g. ``PreparedData.corpus``): the corpus
                reuses them, in their order, so a million answers are not held twice.
        """
        corpus: list[str] = []
        corpus_index: dict[str, int] = {}

        def add(text: str) -> None:
            if text not in corpus_index:
                corpus_index[text] = len(corpus)
                corpus.append(text)

        if texts is not None:
            wanted = {text_digest(answer) for _, answer in iter_pairs(pairs)}
            for text in texts:
                if text_digest(text) in wanted:
                    add(text)
            del wanted
        else:
            for _, answer in iter_pairs(pairs):
                add(answer)
        for text in extra_documents or []:
            add(text)
        query_index: dict[str, int] = {}
        positives: list[list[int]] = []
        rows: list[int] = []
        for query, answer in iter_pairs(pairs):
            if query not in query_index:
                query_index[query] = len(positives)
                positives.append([])
                rows.append(0)
            number = query_index[query]
            rows[number] += 1
            if corpus_index[answer] not in positives[number]:
                positives[number].append(corpus_index[answer])
        return cls(
            list(query_index), corpus, positives, max(rows, default=0), [corpus_index.get(q, -1) for q in query_index]
        )
