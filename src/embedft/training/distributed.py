"""Training on several processes (GPUs, or CPU processes with gloo) started by torchrun.

Only the training itself runs on every process. Rank 0 loads the data, splits it, mines the triplets, scores the
baseline and writes them to the run folder; the other ranks wait, then read what rank 0 shares (the run folder,
its config, the step evaluation set) and the triplets it wrote. After training, rank 0 alone saves the final model,
scores it and writes the reports. The launcher is torchrun (see :mod:`embedft.cli.torchrun`); this module reads the
environment it sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) and never starts processes itself.

"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from embedft.errors import EmbedftError, TrainingError, first_line

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


# How long the other ranks wait for rank 0 to load, mine and score the baseline: hours on a large pool, far beyond
# the 30 minutes after which a collective of the training's own process group gives up.
PREPARATION_TIMEOUT = timedelta(hours=12)


def world_size() -> int:
    """The number of training processes (torchrun's ``WORLD_SIZE``; 1 without a launcher).

    Read from the environment, not from ``accelerate.PartialState``: it is needed before the process group exists
    (to choose its backend, and in config checks), and constructing PartialState would start the group.
    """
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine, which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    """True when torchrun started more than one training process."""
    return world_size() > 1


def is_main_process() -> bool:
    """True on the process that prepares the data and writes every result (rank 0, or the only one)."""
    return rank() == 0


def process_device(device: str) -> str:
    """The training device of this process: under torchrun each process takes the GPU of its local rank (also when
    the config names one GPU, ``cuda:0``: every process would load onto that one)."""
    if is_distributed() and device.split(":")[0] == "cuda":
        return f"cuda:{local_rank()}"
    return device


@dataclass
class SharedRun:
    """What rank 0 hands the other ranks before training: where the run is and how to train.

    ``outcome`` is ``train`` (everyone trains), ``done`` (nothing left to train: the run had finished training or
    was only being finished off) or ``failed`` (rank 0 stopped with ``error``)."""

    outcome: str
    run_dir: str | None = None
    config: Any = None  # the RunConfig of the run (a resumed run's own)
    resumed: bool = False
    step_set: Any = None  # the EvaluationSet scored during training
    error: str | None = None


def start(device: str) -> ProcessGroup:
    """Join the training's process group and return a gloo group for waiting on rank 0.

    The process group is accelerate's ``PartialState``, the one SentenceTransformerTrainer uses later (it is a
    singleton, so the trainer joins this one): NCCL on GPUs, gloo on the CPU. The extra gloo group has a long timeout,
    since rank 0 may mine for hours while the others wait.

    Raises:
        TrainingError: torch was built without distributed support.
    """
    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_available():
        raise TrainingError("this torch build has no torch.distributed: train with one process (NPROC=1)")
    PartialState(cpu=device == "cpu")
    return dist.new_group(backend="gloo", timeout=PREPARATION_TIMEOUT)


def use_all_cores() -> int:
    """Let torch use every core of this machine; return the thread count it had.

    torchrun gives each process one CPU thread. Rank 0 loads, mines and scores alone while the others wait (and
    evaluates alone after training), so in those stages it takes the whole machine.
    """
    import torch

    previous = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(previous, cores))
    return previous


def broadcast_from_main(shared: SharedRun | None, group: ProcessGroup) -> SharedRun:
    """Send rank 0's ``shared`` to every rank; return what rank 0 sent."""
    import torch.distributed as dist

    objects = [shared]
    dist.broadcast_object_list(objects, src=0, group=group)
    return objects[0]


def finish() -> None:
    """Leave the process group together: wait until every rank got here, then close the group.

    A rank that exits while another still holds its connections can make that one abort at exit (SIGABRT) instead
    of ending with its own status; closing together after training, or after rank 0's error has reached everyone,
    lets every process exit as it means to.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def main_process_preparation(group: ProcessGroup) -> Iterator[Callable[[SharedRun], None]]:
    """Rank 0's preparation. It yields ``share``, which the preparation calls once with what the other ranks
    train with. When the preparation stops with an error before that, the other ranks are told, so they stop with
    the same line instead of waiting."""
    import torch

    shared: list[SharedRun] = []
    training_threads = use_all_cores()

    def share(run: SharedRun) -> None:
        if shared:
            raise RuntimeError("rank 0 shares its run once")
        torch.set_num_threads(training_threads)
        shared.append(run)
        broadcast_from_main(run, group)
        if run.outcome == "done":  # nothing to train together
            finish()

    try:
        yield share
    except BaseException as exc:
        if not shared:
            reason = str(exc) if isinstance(exc, EmbedftError) else f"{type(exc).__name__}: {first_line(exc)}"
            broadcast_from_main(SharedRun("failed", error=reason), group)
            finish()
        raise
    if not shared:  # nothing to train: release the other ranks
        broadcast_from_main(SharedRun("done"), group)
        finish()


def receive_run(group: ProcessGroup) -> SharedRun:
    """Wait for rank 0's :class:`SharedRun`.

    Raises:
        TrainingError: rank 0 stopped before training (its own message is in the text).
    """
    shared = broadcast_from_main(None, group)
    if shared.outcome != "train":
        finish()
    if shared.outcome == "failed":
        raise TrainingError(f"rank 0 stopped before training: {shared.error}")
    return shared
