"""The query and document prompts a model applies, as encode_query / encode_document and the trainer apply them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedft.columns import DOCUMENT_TASK, QUERY_TASK, column_tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sentence_transformers.sentence_transformer import SentenceTransformer


# The prompt names SentenceTransformer.encode_query / encode_document try, first present wins
# (sentence_transformers/sentence_transformer/model.py); the library has no public helper that returns them.
QUERY_PROMPT_NAMES = ("query",)

DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def encode_prompt(model: SentenceTransformer, names: Sequence[str]) -> str:
    """The prompt ``encode_query`` (``names`` = :data:`QUERY_PROMPT_NAMES`) or ``encode_document``
    (:data:`DOCUMENT_PROMPT_NAMES`) prepends: the first of ``names`` present in the model's prompts, even when
    empty, else the default prompt (``BaseModel._resolve_prompt``); "" when none applies."""
    for name in names:
        if name in model.prompts:
            return model.prompts[name] or ""
    if model.default_prompt_name is not None:
        return model.prompts.get(model.default_prompt_name) or ""
    return ""


def training_prompts(model: SentenceTransformer, columns: Sequence[str] | None = None) -> dict[str, str] | None:
    """The trainer's ``prompts`` mapping (column to prompt), so training sees the texts exactly as
    ``encode_query``/``encode_document`` (used by mining, evaluation and inference) do.

    Args:
        model: the model whose prompts are used.
        columns: the dataset's text columns; None means the mined (query, answer, negative) triplets.

    Returns:
        The non-empty prompt of each column, or None when no column has one. The trainer applies only this
        mapping (never the model's default prompt), so every prompt it should use has to be in it.
    """
    prompts = {
        QUERY_TASK: encode_prompt(model, QUERY_PROMPT_NAMES),
        DOCUMENT_TASK: encode_prompt(model, DOCUMENT_PROMPT_NAMES),
    }
    by_column = {column: prompts[task] for column, task in column_tasks(columns).items() if prompts[task]}
    return by_column or None
