"""Checkpoints and the final model on disk: the last complete checkpoint, its process count, an atomic save."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.errors import OutputError, first_line

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder, or None.

    A checkpoint is complete once ``trainer_state.json`` is in it (the trainer writes it last); one cut short by a
    crash is skipped with a warning. ``transformers.trainer_utils.get_last_checkpoint`` returns the highest-numbered
    folder even when it is incomplete, and resuming from it would fail.
    """
    folders = [p for p in Path(checkpoint_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        logger.warning("Skipping the incomplete checkpoint %s", folder)
    return None


def checkpoint_processes(checkpoint: Path) -> int:
    """How many training processes wrote ``checkpoint``: one random-state file each (``rng_state_<rank>.pth``), or
    ``rng_state.pth`` for one process."""
    per_rank = len(list(Path(checkpoint).glob("rng_state_*.pth")))
    return per_rank or 1


def save_model_atomically(model: SentenceTransformer, destination: Path) -> None:
    """Save ``model`` so that ``SentenceTransformer(destination)`` loads it, never leaving a half-written folder.

    The model is written to a temporary sibling folder and renamed into place once complete.
    """
    from safetensors import SafetensorError

    destination = Path(destination)
    if destination.exists():
        raise OutputError(f"{destination} already exists and is never overwritten")
    for stale in destination.parent.glob(f".{destination.name}.partial-*"):  # left by a save that crashed
        shutil.rmtree(stale, ignore_errors=True)
    temporary = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    temporary.mkdir()
    try:
        model.save(str(temporary))
        temporary.rename(destination)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error type
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(
            f"cannot save the final model to {destination}: {getattr(exc, 'strerror', None) or first_line(exc)} "
            "(nothing half-written was left; free disk space and resume the run to save it)"
        ) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
