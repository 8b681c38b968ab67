"""Opening a run: a new folder, or an interrupted one resumed with the few settings that may change."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.config.parsing import load_config, parse_override, save_config
from embedft.config.schema import RunConfig
from embedft.errors import ConfigError
from embedft.logs import setup_logging
from embedft.run.files import RunFiles, RunLock, create_run_dir, find_resumable_run, lock_run, run_config
from embedft.training import distributed
from embedft.training.arguments import check_training_arguments
from embedft.training.checkpoints import checkpoint_processes, last_checkpoint

if TYPE_CHECKING:
    from collections.abc import Sequence


logger = logging.getLogger(__name__)

# What a resumed run may change: how often it evaluates, saves and logs, where it logs, how batches are loaded, and
# batch_size with gradient accumulation as long as their product (the rows of one optimizer step) stays the same.
RESUME_SAFE_KEYS = (
    "batch_size",
    "training.gradient_accumulation_steps",
    "training.eval_steps",
    "training.save_steps",
    "training.logging_steps",
    "training.save_total_limit",
    "training.report_to",
    "training.dataloader_num_workers",
)


# Says where the run is (RESUME=latest looks there); the run keeps its own.
RESUME_LOCATOR_KEYS = ("output_dir",)

OPTIMISATION_KEYS = ("num_epochs", "learning_rate", "weight_decay", "warmup_ratio", "temperature", "device")


def resume_refusal(key: str) -> str:
    """One line saying why ``key`` cannot change on a resumed run, and what can."""
    section = key.split(".", 1)[0]
    if section == "mining":
        reason = "the run's mined triplets are saved with it"
    elif section == "evaluation":
        reason = "baseline and final must be scored alike, and the baseline is saved with the run"
    elif section == "training" or key in OPTIMISATION_KEYS:
        reason = "the checkpoint's optimizer, learning-rate schedule and loss go on with the values they started with"
    elif "model" in key or "prompt" in key or key == "max_seq_length":
        reason = "the checkpoint holds the model as it was configured"
    else:
        reason = "the run's split, mined triplets and baseline were made with the config it started with"
    return (
        f"'{key}' cannot change on a resumed run: {reason}; start a new run to change it (a resumed run takes only "
        f"{', '.join(RESUME_SAFE_KEYS)}; batch_size times gradient_accumulation_steps unchanged)"
    )


def check_resume_overrides(overrides: Sequence[str]) -> None:
    """Refuse, with the reason, an override that a resumed run cannot take (see ``RESUME_SAFE_KEYS``).

    Raises:
        ConfigError: an override of any other key.
    """
    for override in overrides:
        key, _ = parse_override(override)
        if key not in RESUME_SAFE_KEYS and key not in RESUME_LOCATOR_KEYS:
            raise ConfigError(resume_refusal(key))


def flat_options(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"eval_steps": 5}}`` as ``{"training.eval_steps": 5}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and not prefix:
            flat.update(flat_options(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_global_batch(saved: RunConfig, changed: RunConfig) -> None:
    """A resumed run may split its batches differently, never change how many rows an optimizer step sees: the
    checkpoint's learning-rate schedule and its position in the data count steps of that many rows.

    Raises:
        ConfigError: ``batch_size`` times ``training.gradient_accumulation_steps`` differs from the saved run's.
    """
    before = saved.batch_size * saved.training.accumulation_steps
    after = changed.batch_size * changed.training.accumulation_steps
    if before != after:
        half = max(before // 2, 1)
        example = f"batch_size={half} training.gradient_accumulation_steps={before // half}"
        raise ConfigError(
            f"'batch_size' x 'training.gradient_accumulation_steps' must stay {before} on a resumed run (it was "
            f"{saved.batch_size} x {saved.training.accumulation_steps}), got {changed.batch_size} x "
            f"{changed.training.accumulation_steps} = {after}: e.g. {example}"
        )


def open_resumed_run(
    output_dir: str, resume: str, overrides: Sequence[str] = ()
) -> tuple[RunFiles, RunConfig, RunLock]:
    """The run to resume (a folder, or ``latest``), locked, with its own saved config, changed by the ``key=value``
    ``overrides`` a resumed run can take (:func:`check_resume_overrides`; ``output_dir`` only says where to look).
    A change is written to the run's ``config.yaml`` and logged, so the run's record says what it ran with.

    Raises:
        ConfigError: an override a resumed run cannot take, or one that changes the rows of an optimizer step.
        OutputError: no such unfinished run, or another process holds it.
    """
    check_resume_overrides(overrides)
    run_dir = find_resumable_run(output_dir, resume)
    lock = lock_run(run_dir)
    try:
        run_dir = find_resumable_run(output_dir, str(run_dir))  # it may have finished while we waited
        files = RunFiles(run_dir)
        saved = load_config(files.config)
        changes = [override for override in overrides if parse_override(override)[0] not in RESUME_LOCATOR_KEYS]
        if not changes:
            return files, saved, lock
        config = load_config(files.config, changes)
        check_training_arguments(config)
        check_global_batch(saved, config)
    except BaseException:
        lock.close()
        raise
    before, after = flat_options(saved.to_dict()), flat_options(config.to_dict())
    changed = [f"{key} {before.get(key)} -> {after[key]}" for key in after if before.get(key) != after[key]]
    if changed:
        setup_logging(files.log)
        logger.info("Resuming %s with changed settings (saved in its config.yaml): %s", run_dir, "; ".join(changed))
        save_config(config, files.config)
    return files, config, lock


def open_new_run(config: RunConfig) -> tuple[RunFiles, RunLock]:
    """Create, lock and describe a new run folder: the resolved config and an empty ``data/``."""
    files = RunFiles(create_run_dir(config.output_dir, config.run_name))
    lock = lock_run(files.run_dir)
    save_config(config, files.config)
    files.data_dir.mkdir()
    return files, lock


def check_same_processes(files: RunFiles) -> None:
    """Refuse to resume a run's checkpoint with another number of training processes: its position in the data,
    learning-rate schedule and random states hold for the number it was saved with.

    Raises:
        ConfigError: the last checkpoint was written by a different number of processes.
    """
    if files.final_model.is_dir():  # training had finished: nothing of the checkpoint is resumed
        return
    checkpoint = last_checkpoint(files.checkpoints)
    if checkpoint is None:
        return
    saved, now = checkpoint_processes(Path(checkpoint)), distributed.world_size()
    if saved != now:
        raise ConfigError(
            f"run {files.run_dir} was training on {saved} process(es) and is resumed on {now}: resume it with "
            f"NPROC={saved} (the checkpoint's data position, schedule and random states are per process)"
        )


def training_config_device(config: RunConfig, resume: str | None) -> str:
    """The configured device the run will train on: a resumed run keeps its own (``device`` cannot change on
    resume), whatever the command line's config says; it decides the process group's backend (gloo or NCCL)."""
    return run_config(config, resume).device
