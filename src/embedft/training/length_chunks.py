"""Each text column of a training batch encoded in length-sorted chunks, each chunk padded only to its own longest
text (``training.length_chunks``).

The collator pads a column to its longest text, so a batch of mostly short texts with one long one computes
mostly padding. Sorting the column's rows by length and running the model on chunks of ``rows`` of them cuts that
padding, with the same batch and the same loss: a text's embedding does not depend on how far it was padded (its
attention mask hides the padding), so the in-batch negatives, the no-duplicates batches and the loss are those of the
plain step, equal within floating-point noise. Only right-padded inputs are chunked: trimming left padding would move
the texts' positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer


# A chunk is padded up to a multiple of this many tokens: a few shapes, so the CPU's kernels (oneDNN primitives) and
# torch.compile are built a few times, not once for every length.
BUCKET = 32

# Texts a chunk under training.length_chunks: auto on the CPU. Measured on MiniLM at batch 32 (make bench-throughput):
# 16 gave 1.6x the plain step's tokens/s, 8 gave 1.4x (docs/benchmarks.md). A GPU runs a whole column in parallel,
# so auto leaves it unchunked until it is measured there.
CPU_CHUNK_ROWS = 16


def chunk_rows(setting: int | str | None, device: str) -> int | None:
    """The texts a chunk for ``training.length_chunks`` on ``device``: 'auto' is :data:`CPU_CHUNK_ROWS` on the CPU
    and None (unchunked) elsewhere; a number or None is taken as it is."""
    if setting == "auto":
        return CPU_CHUNK_ROWS if device == "cpu" else None
    return setting


@contextmanager
def length_chunked(model: SentenceTransformer, rows: int | None) -> Iterator[None]:
    """Within the block, ``model``'s forward pass runs a batch in length-sorted chunks of ``rows`` texts
    (:func:`forward_in_chunks`); None or 0: unchanged."""
    if not rows:
        yield
        return
    forward = model.forward
    own_forward = model.__dict__.get("forward")  # a forward already patched on this model (e.g. bf16 encoding)

    def chunked(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return forward_in_chunks(forward, features, rows, **kwargs)

    model.forward = chunked
    try:
        yield
    finally:
        if own_forward is None:
            del model.forward
        else:
            model.forward = own_forward


def forward_in_chunks(
    forward: Callable[..., dict[str, Any]], features: dict[str, Any], rows: int, **kwargs: Any
) -> dict[str, Any]:
    """``forward(features)``'s ``sentence_embedding`` computed ``rows`` texts at a time, longest first, each chunk's
    padding cut to its longest text; a batch of ``rows`` or fewer, or a left-padded one, runs as it is."""
    mask = features.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] <= rows or is_left_padded(mask):
        return forward(features, **kwargs)
    batch, width = mask.shape
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    pieces = []
    for start in range(0, batch, rows):
        index = order[start : start + rows]
        longest = min(-(-int(lengths[index].max()) // BUCKET) * BUCKET, width)
        chunk = {key: rows_of(value, index, batch, width, longest) for key, value in features.items()}
        pieces.append(forward(chunk, **kwargs)["sentence_embedding"])
    return {"sentence_embedding": torch.cat(pieces)[torch.argsort(order)]}


def rows_of(value: Any, index: torch.Tensor, batch: int, width: int, longest: int) -> Any:
    """The chunk's rows of one feature: per-text tensors are indexed, per-token ones also cut to ``longest``; other
    values (a prompt length given as an int, a task name) pass as they are."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != batch:
        return value
    value = value[index.to(value.device)]
    return value[:, :longest] if value.dim() >= 2 and value.shape[1] == width else value


def is_left_padded(mask: torch.Tensor) -> bool:
    """Whether the padding comes first: every text ends at the last position and some start after the first."""
    return bool((mask[:, -1] != 0).all() and (mask[:, 0] == 0).any())
