"""The run folder: its file names decided in one place, new folders never reused, the run lock, ``latest`` and
which run a model belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedft.config.parsing import load_config, save_config
from embedft.config.schema import RunConfig
from embedft.errors import OutputError
from embedft.io import write_json
from embedft.run.files import RunFiles, create_run_dir, lock_run, point_latest, run_config, run_dir_of


def test_a_held_run_is_refused_at_once_and_free_again_when_released(tmp_path):
    lock = lock_run(tmp_path)
    with pytest.raises(OutputError, match="in use by another training process"):
        lock_run(tmp_path)
    lock.close()
    with lock_run(tmp_path):  # released by close(); a with block releases it too
        pass
    lock_run(tmp_path).close()


def test_every_file_of_a_run_folder_is_named_by_run_files(tmp_path):
    files = RunFiles(tmp_path)
    named = {
        files.config, files.split, files.baseline, files.checkpoints, files.final_model, files.tensorboard,
        files.log, files.metrics, files.similarities, files.mining, files.embeddings, files.report, files.lock,
        files.complete, files.triplets("train"), files.triplets("test"), files.triplets("dev"), files.plot("loss"),
        files.plot("mining"),
    }  # fmt: skip
    assert all(path.parent in (tmp_path, files.data_dir) for path in named) and len(named) == 19
    assert files.triplets("test").name == "eval_triplets.jsonl"


def test_cached_triplets_are_reused_only_for_the_split_they_were_made_from(tmp_path):
    files = RunFiles(tmp_path)
    files.data_dir.mkdir()
    assert not files.has_split({"train": "a"})
    write_json(files.split, {"train": "a", "test": "b"})
    assert files.has_split({"train": "a", "test": "b"})
    assert not files.has_split({"train": "a", "test": "c"})


def test_a_named_run_folder_is_never_reused_and_unsafe_names_are_refused(tmp_path):
    first = create_run_dir(tmp_path, "run")
    with pytest.raises(OutputError, match="already exists and is never overwritten"):
        create_run_dir(tmp_path, "run")
    for name in ("latest", "../up", "a/b"):
        with pytest.raises(OutputError, match="plain folder name"):
            create_run_dir(tmp_path, name)
    assert first.is_dir() and create_run_dir(tmp_path, None) != create_run_dir(tmp_path, None)


def test_latest_is_a_relative_link_replaced_atomically(tmp_path):
    one, two = create_run_dir(tmp_path, "one"), create_run_dir(tmp_path, "two")
    point_latest(one)
    point_latest(two)
    link = tmp_path / "latest"
    assert link.is_symlink() and Path(link.readlink()) == Path("two")
    assert not list(tmp_path.glob(".latest*"))


def test_a_model_inside_a_run_folder_knows_its_run(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    save_config(RunConfig(), RunFiles(run).config)
    assert run_dir_of(str(run / "final")) == run
    assert run_dir_of(str(run / "checkpoints" / "checkpoint-4")) == run
    assert run_dir_of(str(tmp_path / "elsewhere" / "final")) is None


def test_a_resumed_run_goes_on_with_its_own_saved_config(tmp_path):
    run = create_run_dir(tmp_path, "run")
    save_config(RunConfig(seed=5, output_dir=str(tmp_path)), RunFiles(run).config)
    given = load_config(None, [f"output_dir={tmp_path}"])
    assert run_config(given, None) is given
    assert run_config(given, str(run)).seed == 5
    assert run_config(given, "latest").seed == 5
