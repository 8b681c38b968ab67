"""The lock of tested versions: written from a tested environment, read back, and compared with what is installed."""

from __future__ import annotations

import platform
from importlib import metadata

import pytest

from embedft.errors import ConfigError
from embedft.run.provenance import provenance
from embedft.run.version_lock import LOCK_FILE, lock_state, lock_text, read_lock, write_lock
from tests.conftest import ROOT, make_dry_run

PYTHON = ".".join(platform.python_version_tuple()[:2])
FREEZE = "PyYAML==6.0.4\ntorch==2.13.0+cpu\nnvidia-cublas-cu12==12.8.4.1\ntriton==3.5.0\nnumpy==2.4.6\n"


def test_the_lock_pins_everything_but_torchs_build_for_this_python():
    text = lock_text(FREEZE)
    pins = [line for line in text.splitlines() if not line.startswith("#")]
    assert pins == [f'numpy==2.4.6 ; python_version == "{PYTHON}"', f'PyYAML==6.0.4 ; python_version == "{PYTHON}"']


def test_a_lock_is_read_back_as_its_pins(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(lock_text(FREEZE))
    assert read_lock(path) == {"numpy": "2.4.6", "pyyaml": "6.0.4"}


def test_pins_for_another_python_do_not_apply(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text('numpy==2.4.6 ; python_version == "2.7"\n')
    assert read_lock(path) == {}
    assert lock_state(path)["matches"] is False


def test_the_installed_packages_match_a_lock_of_themselves_and_a_changed_pin_is_named(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(f"pyyaml=={metadata.version('pyyaml')}\nnumpy=={metadata.version('numpy')}\n")
    assert lock_state(path) == {"file": str(LOCK_FILE), "matches": True, "differs": {}}
    path.write_text("numpy==0.0.1\nno-such-package-here==1.0\n")
    state = lock_state(path)
    assert state["matches"] is False
    assert state["differs"] == {
        "numpy": {"locked": "0.0.1", "installed": metadata.version("numpy")},
        "no-such-package-here": {"locked": "1.0", "installed": None},
    }


def test_a_line_that_is_not_a_pin_is_one_error_naming_the_line(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text("# header\nnumpy=\n")
    with pytest.raises(ConfigError, match=r"constraints.txt:2: not a pin"):
        read_lock(path)


def test_the_lock_is_written_only_from_the_packages_make_test_passed_on(tmp_path):
    tested = tmp_path / "tested-freeze.txt"
    output = tmp_path / "requirements" / "constraints.txt"
    with pytest.raises(ConfigError, match="run make test in this environment first"):
        write_lock(FREEZE, tested, output)
    tested.write_text(FREEZE.replace("numpy==2.4.6", "numpy==2.4.5"))
    with pytest.raises(ConfigError, match="the packages changed since make test last passed"):
        write_lock(FREEZE, tested, output)
    assert not output.exists()
    tested.write_text(FREEZE)
    assert write_lock(FREEZE, tested, output) == 2
    assert read_lock(output) == {"numpy": "2.4.6", "pyyaml": "6.0.4"}


def test_the_checkouts_lock_leaves_torch_to_torch_spec_and_says_how_it_was_made():
    text = (ROOT / LOCK_FILE).read_text()
    pins = read_lock(ROOT / LOCK_FILE)
    assert "torch" not in pins
    assert {"sentence-transformers", "transformers", "datasets", "accelerate"} <= set(pins)
    assert "make lock" in text


def test_metrics_provenance_says_whether_the_packages_are_the_locks():
    from embedft.config.parsing import load_config

    record = provenance(load_config())
    assert record["lock"]["file"] == "requirements/constraints.txt"
    assert isinstance(record["lock"]["matches"], bool)


def test_setup_installs_with_the_lock_and_test_latest_without_it():
    setup = make_dry_run("-B", "setup")
    assert "-c requirements/constraints.txt -c .venv/torch-pin.txt -e '.[dev]'" in setup
    latest = make_dry_run("-B", "test-latest")
    assert "VENV=.venv-latest LOCK=" in latest
    unlocked = make_dry_run("-B", "setup", "VENV=.venv-latest", "LOCK=")
    assert "--upgrade --upgrade-strategy eager -c .venv-latest/torch-pin.txt -e '.[dev]'" in unlocked
