"""The column names every stage shares: the pairs' query and answer, the data's own negatives, the mined negatives,
and which side (query or document) each column is encoded as.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from datasets import Dataset

QUERY = "query"
ANSWER = "answer"
# A pair's negatives from the data itself (a list of texts), read from flagembedding 'neg', tevatron
# 'negative_passages' or a pairs file's negative_column; absent when the data has none.
GIVEN_NEGATIVES = "given_negatives"
# A pair's graded relevance (an integer of 1 or more, as BEIR qrels grade): from relevance_column or a BEIR folder's
# qrels; absent when every pair is simply relevant.
RELEVANCE = "relevance"
# The mined negative of a training or evaluation triplet (mine_hard_negatives' column name); with several negatives
# per row, negative_1 ... negative_k (negative_columns).
NEGATIVE = "negative"
# The columns flagembedding and tevatron rows hold their positives and negatives in.
FORMAT_COLUMNS = {"flagembedding": ("pos", "neg"), "tevatron": ("positive_passages", "negative_passages")}
# The tasks encode_query / encode_document pass to the model, which a Router module routes on.
QUERY_TASK = "query"
DOCUMENT_TASK = "document"
# The columns of the mined training triplets, in the order MNRL reads them (anchor, positive, negative).
TRIPLET_COLUMNS = (QUERY, ANSWER, NEGATIVE)


def negative_columns(num_negatives: int) -> list[str]:
    """The negative columns of mined training rows: ``negative`` for triplets, else ``negative_1`` ...
    ``negative_k``, as mine_hard_negatives names them with ``output_format="n-tuple"``."""
    if num_negatives == 1:
        return [NEGATIVE]
    return [f"{NEGATIVE}_{i}" for i in range(1, num_negatives + 1)]


def negative_columns_of(triplets: Dataset) -> list[str]:
    """The negative columns a mined dataset has (``negative``, or ``negative_1`` ... ``negative_k``), in order."""
    names = [name for name in triplets.column_names if name == NEGATIVE or name.startswith(f"{NEGATIVE}_")]
    return sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]) if name != NEGATIVE else 0)


def column_tasks(columns: Sequence[str] | None = None) -> dict[str, str]:
    """Each text column's task: the query column is encoded as a query, every other one (answer, negative,
    negative_1..k) as a document, exactly as mining and evaluation encode them."""
    return {column: QUERY_TASK if column == QUERY else DOCUMENT_TASK for column in columns or TRIPLET_COLUMNS}
