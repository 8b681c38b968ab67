"""The no-duplicates batch sampler made safe for several training processes.

Under DDP, accelerate deals the sampler's batches out in turn (batch i to rank i mod N), and
SentenceTransformerTrainer turns off its padding of the last round (``even_batches=False``). A sampler whose batch
count is not a multiple of N, or whose last batches are short, then gives one rank more steps than another, and
that rank waits forever in the gradient all-reduce (or in the loss's gather of the other ranks' embeddings).
:class:`EvenNoDuplicatesBatchSampler` yields exactly the number of full batches it announces, a multiple of N.

"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

from embedft.errors import TrainingError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


class EvenNoDuplicatesBatchSampler(NoDuplicatesBatchSampler):
    """A :class:`NoDuplicatesBatchSampler` that yields exactly ``len(self)`` full batches, a multiple of the number of
    processes (``num_replicas``).

    Its length is the one-process sampler's batch count rounded up to a multiple of ``num_replicas``. The batches are
    the no-duplicates sampler's full batches of this epoch, in order; its short last batches are left out, and when
    the full ones run short, the epoch's first batches are repeated (like DistributedSampler's padding). Every rank
    draws the same sequence (same seed and epoch), so each one gets ``len(self) // num_replicas`` batches.
    """

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, *, num_replicas: int = 1, **kwargs: Any):
        """``num_replicas``: the number of training processes; the other arguments are NoDuplicatesBatchSampler's."""
        super().__init__(dataset, batch_size, drop_last, **kwargs)
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
        self.num_replicas = num_replicas

    def __len__(self) -> int:
        batches = super().__len__()
        return -(-batches // self.num_replicas) * self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        expected = len(self)
        full_batches: list[list[int]] = []
        for batch in super().__iter__():
            if len(batch) == self.batch_size:
                full_batches.append(batch)
                yield batch
                if len(full_batches) == expected:
                    return
        if not full_batches:
            raise TrainingError(
                f"the training data holds no batch of {self.batch_size} rows without a repeated text, which every "
                "process needs: lower batch_size"
            )
        missing = expected - len(full_batches)
        logger.info("Repeating %d batches so that each of %d processes gets as many", missing, self.num_replicas)
        for index in range(missing):
            yield full_batches[index % len(full_batches)]
