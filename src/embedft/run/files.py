"""Run folders: one per run under ``output_dir``, never reused, and a ``latest`` link to the newest good one."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from embedft.config.parsing import load_config
from embedft.config.schema import RunConfig
from embedft.errors import OutputError
from embedft.io import atomic_path, read_json

logger = logging.getLogger(__name__)


LATEST = "latest"  # the link, in the output folder, to the newest finished run
SAFE_NAME = re.compile(r"^[\w.-]+$")
# The report's plots, by what they show.
PLOT_FILES = {
    "loss": "loss.png",
    "eval_metrics": "eval_metrics.png",
    "baseline_vs_final": "baseline_vs_final.png",
    "similarities": "similarities.png",
    "mining": "mining.png",
}


@dataclass(frozen=True)
class RunFiles:
    """Where a run folder keeps each result, and which of them a resumed run reuses: every file name of a run folder
    is decided here, and only here.

    Cached stage results (reused by RESUME): the mined triplets (with their mining.json), the baseline scores, the
    checkpoints and the final model. ``COMPLETE`` is written last of all, so a run without it can always be resumed or
    finished.
    """

    run_dir: Path

    @property
    def config(self) -> Path:
        """The resolved config the run was made with: what makes a folder a run folder."""
        return self.run_dir / "config.yaml"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def triplets(self, split: str) -> Path:
        """Mined triplets of ``train``, ``test`` (named ``eval_triplets.jsonl``) or ``dev``."""
        return self.data_dir / f"{'eval' if split == 'test' else split}_triplets.jsonl"

    @property
    def unmined_pairs(self) -> Path:
        """The training pairs kept without negatives (``mining.unmined_pairs: in_batch``), written with the mined
        training rows."""
        return self.data_dir / "train_pairs.jsonl"

    @property
    def split(self) -> Path:
        """The fingerprint of the split the cached triplets and baseline belong to."""
        return self.data_dir / "split.json"

    def has_split(self, fingerprint: dict[str, str]) -> bool:
        """Whether the run's cached triplets and baseline were made from the split with this fingerprint
        (:attr:`~embedft.data.prepared.PreparedData.fingerprint`), so they may be reused."""
        return self.split.is_file() and read_json(self.split) == fingerprint

    @property
    def baseline(self) -> Path:
        return self.data_dir / "baseline.json"

    @property
    def merge(self) -> Path:
        """What ``merge_with_base`` chose (the dev score of each weight), written before the final model."""
        return self.data_dir / "merge.json"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def final_model(self) -> Path:
        return self.run_dir / "final"

    @property
    def tensorboard(self) -> Path:
        return self.run_dir / "tensorboard"

    @property
    def log(self) -> Path:
        return self.run_dir / "train.log"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def similarities(self) -> Path:
        return self.run_dir / "similarities.json"

    @property
    def questions(self) -> Path:
        """The test questions that got better or worse (:func:`~embedft.evaluation.changes.question_changes`)."""
        return self.run_dir / "questions.json"

    @property
    def mining(self) -> Path:
        """What the training mining did (:class:`~embedft.mining.diagnostics.MiningDiagnostics`), written with the
        mined triplets and kept with them: a resumed run that reuses the triplets keeps it too."""
        return self.run_dir / "mining.json"

    @property
    def embeddings(self) -> Path:
        """The final model's embeddings of the pool (an :class:`~embedft.models.embedding_cache.EmbeddingCache`),
        written by the final evaluation and read by ``make infer-embed``."""
        return self.run_dir / "embeddings"

    @property
    def index(self) -> Path:
        """Where ``make export-index`` writes the final model's faiss index of the pool (:mod:`embedft.export`)."""
        return self.run_dir / "index"

    @property
    def report(self) -> Path:
        return self.run_dir / "report.md"

    def plot(self, name: str) -> Path:
        """One of the report's plots (:data:`PLOT_FILES`)."""
        return self.run_dir / PLOT_FILES[name]

    @property
    def lock(self) -> Path:
        """The file whose lock says a process is using the run (:func:`lock_run`)."""
        return self.run_dir / ".lock"

    @property
    def complete(self) -> Path:
        return self.run_dir / "COMPLETE"


def create_run_dir(output_dir: str | Path, run_name: str | None) -> Path:
    """Create and return a new, empty run folder.

    Args:
        output_dir: parent folder of all runs.
        run_name: the folder's name; None makes one from the time. An existing folder is never reused.

    Raises:
        OutputError: the name is taken, unsafe, or the folder cannot be written.
    """
    output_dir = Path(output_dir)
    if run_name is not None and (not SAFE_NAME.match(run_name) or run_name in (LATEST, ".", "..")):
        raise OutputError(f"run_name '{run_name}' must be a plain folder name (letters, digits, '.', '_', '-')")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output_dir {output_dir}: {exc.strerror}: choose a writable output_dir"
        ) from None
    if not os.access(output_dir, os.W_OK):
        raise OutputError(f"output_dir {output_dir} is not writable: choose a writable output_dir")
    if run_name is not None:
        run_dir = output_dir / run_name
        if run_dir.exists():
            raise OutputError(
                f"run folder {run_dir} already exists and is never overwritten: "
                "choose another run_name or leave it null"
            )
        run_dir.mkdir()
        return run_dir
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        run_dir = output_dir / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise OutputError(f"cannot find a free run folder name under {output_dir}")


def mark_complete(run_dir: Path) -> None:
    """Write the ``COMPLETE`` marker: the last file of a finished run."""
    RunFiles(run_dir).complete.write_text(datetime.now().isoformat(timespec="seconds") + "\n", encoding="utf-8")


def point_latest(run_dir: Path) -> None:
    """Make ``latest`` beside ``run_dir`` (in the output folder that holds it) point at it: atomically replaced,
    relative link. Not the saved config's ``output_dir``: relative, it names another folder when the run is resumed
    from another working directory."""
    with atomic_path(run_dir.parent / LATEST) as temporary:
        temporary.symlink_to(run_dir.name)


def resolve_model_argument(output_dir: str | Path, model: str | None) -> str:
    """The model that eval-embed / infer-embed use: the given one, or the latest run's final model.

    ``model`` may be a run folder (its final model is used), a model folder, a packaged or hub name, or
    ``latest``.

    Raises:
        OutputError: no model given and no finished run yet.
    """
    if model is None or model == LATEST:
        latest = RunFiles(Path(output_dir) / LATEST).final_model
        if not latest.is_dir():
            raise OutputError(
                f"no finished run in {output_dir} (no {latest}): run 'make train-embed' first, or pass MODEL=path"
            )
        return str(latest.resolve())
    run_final = RunFiles(Path(model)).final_model
    if run_final.is_dir():
        return str(run_final)
    return model


def run_dir_of(model_path: str) -> Path | None:
    """The run folder a model belongs to (``<run>/final`` or ``<run>/checkpoints/checkpoint-N``), or None."""
    path = Path(model_path)
    for run_dir in (path.parent, path.parent.parent):
        files = RunFiles(run_dir)
        if files.config.is_file() and (path == files.final_model or path.parent == files.checkpoints):
            return run_dir
    return None


def resolve_model_and_config(
    model: str | None, config_path: str | None, overrides: list[str]
) -> tuple[str, Path | None, RunConfig]:
    """For eval-embed and infer-embed: the model to load, its run folder (if any), and the config to use.

    The config is the given file; without one, the evaluated run's own ``config.yaml`` (so the split and data
    match the run); for a model from no run (e.g. the base model), the latest run's, so both are scored on the
    same split; without any run, the embedded defaults. Overrides apply in every case.
    """
    given = load_config(config_path, overrides)
    model_path = resolve_model_argument(given.output_dir, model)
    run_dir = run_dir_of(model_path)
    if config_path is not None:
        return model_path, run_dir, given
    if run_dir is not None:
        return model_path, run_dir, load_config(RunFiles(run_dir).config, overrides)
    latest_config = RunFiles(Path(given.output_dir).expanduser() / LATEST).config
    if latest_config.is_file():
        logger.info("Scoring %s with the latest run's config %s (its data and split)", model_path, latest_config)
        return model_path, run_dir, load_config(latest_config, overrides)
    return model_path, run_dir, given


def is_finished(run_dir: Path) -> bool:
    """A run is finished once its ``COMPLETE`` marker exists (written after everything else); a run made before
    the marker existed (metrics.json but no split fingerprint) counts as finished too."""
    files = RunFiles(run_dir)
    return files.complete.is_file() or (files.metrics.is_file() and not files.split.is_file())


def find_resumable_run(output_dir: str | Path, resume: str) -> Path:
    """The run folder to resume: a given folder, or with ``latest`` the newest unfinished run in ``output_dir``.

    Raises:
        OutputError: no such run, not a run folder, or already finished.
    """
    if resume == LATEST:
        candidates = [
            path
            for path in Path(output_dir).glob("*")
            if path.is_dir() and not path.is_symlink() and RunFiles(path).config.is_file() and not is_finished(path)
        ]
        if not candidates:
            raise OutputError(f"no unfinished run in {output_dir} to resume: start one with 'make train-embed'")
        return max(candidates, key=lambda path: RunFiles(path).config.stat().st_mtime)
    run_dir = Path(resume)
    if not RunFiles(run_dir).config.is_file():
        raise OutputError(f"{resume} is not a run folder (no config.yaml): pass RESUME=outputs/<run> or RESUME=latest")
    if is_finished(run_dir):
        raise OutputError(f"run {resume} already finished (it has COMPLETE): there is nothing to resume")
    return run_dir


def run_config(config: RunConfig, resume: str | None) -> RunConfig:
    """The config a run goes on with: ``config`` for a new run, the saved one of the run ``resume`` names (a folder or
    ``latest`` in ``config.output_dir``) for a resumed one, before any change RESUME may make to it."""
    if resume is None:
        return config
    return load_config(RunFiles(find_resumable_run(config.output_dir, resume)).config)


class RunLock:
    """An exclusive lock on a run folder (its ``.lock`` file), held until :meth:`close`, the end of a ``with`` block,
    or the end of the process, whichever comes first.

    ``filelock`` takes it the way each OS allows (``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows,
    a lock file where the file system has neither), and the OS drops it when a killed process dies, so a crashed run
    is never left locked.
    """

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    @property
    def locked(self) -> bool:
        return bool(self._lock.is_locked)

    def close(self) -> None:
        """Release the lock (the ``.lock`` file stays; it is only the lock's handle)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lock_run(run_dir: Path) -> RunLock:
    """Take an exclusive lock on a run folder for as long as the returned lock stays open (at most the process's
    life), on every OS.

    Two processes training into one run would interleave checkpoints; the second one is refused at once instead of
    waiting.

    Raises:
        OutputError: another process holds the run.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(RunFiles(run_dir).lock, timeout=0)  # timeout 0: refused at once when held
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(
            f"run {run_dir} is in use by another training process: let it finish, or resume another run"
        ) from None
    return RunLock(lock)
