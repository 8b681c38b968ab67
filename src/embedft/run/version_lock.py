"""The lock of tested versions: ``requirements/constraints.txt``, every package of a ``.venv`` that passed
``make test``, pinned exactly.

``make setup`` installs with it (``pip install -c``), so a fresh machine gets the set the suite passed on, not
whatever was released last; ``pyproject.toml`` keeps its ranges for people who install embedft into an environment
of their own. torch is left out: the Makefile installs it first from ``TORCH_SPEC`` (CPU or CUDA build), and the
lock must not fight that choice. Each pin carries the Python it was tested on as a marker
(``; python_version == "3.11"``), so another Python installs from the ranges instead of failing on a release that
does not exist for it.

``make lock`` writes the file (:func:`write_lock`); ``metrics.json`` says whether a run's packages are the lock's
(:func:`lock_state`).

"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from embedft.errors import ConfigError
from embedft.io import write_text

LOCK_FILE = Path("requirements") / "constraints.txt"

# Installed by TORCH_SPEC, not by the lock: torch itself and the packages that belong to its CUDA build.
TORCH_BUILD = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def checkout_lock_file() -> Path | None:
    """The lock of the checkout embedft runs from (an editable install), None for an installed wheel."""
    package = Path(__file__).resolve().parents[1]  # src/embedft in a checkout
    root = package.parent.parent
    if package.parent.name != "src" or not (root / "pyproject.toml").is_file():
        return None
    path = root / LOCK_FILE
    return path if path.is_file() else None


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a lock that apply to this Python: ``{canonical name: version}``."""
    pins = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise ConfigError(f"{path}:{number}: not a pin ({error}): run make lock to write the file again") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (specifier,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def lock_state(path: Path | None = None) -> dict[str, Any]:
    """Whether the installed packages are the lock's, for ``metrics.json``'s provenance.

    Returns:
        ``{"file", "matches", "differs": {name: {"locked", "installed"}}}``: ``matches`` is true when every pin that
        applies to this Python is installed at its version (torch is never pinned); false when the lock is for
        another Python or any package differs. ``{}`` when there is no lock (an installed wheel).
    """
    path = path or checkout_lock_file()
    if path is None:
        return {}
    pins = read_lock(path)
    differs = {}
    for name, locked in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != locked:
            differs[name] = {"locked": locked, "installed": installed}
    return {"file": str(LOCK_FILE), "matches": bool(pins) and not differs, "differs": differs}


def installed_freeze() -> str:
    """This environment's ``pip freeze --exclude-editable``, the same command ``make test`` records when it passes."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ConfigError(f"pip freeze failed ({done.stderr.strip().splitlines()[-1:]}): is pip installed here?")
    return done.stdout


def lock_text(freeze: str) -> str:
    """A lock file from ``pip freeze --exclude-editable`` output: the pins without torch's build, each marked with
    this Python's version, under a header that says how the file is made."""
    python = ".".join(platform.python_version_tuple()[:2])
    pins = []
    for line in freeze.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" not in line:
            raise ConfigError(f"pip freeze gave {line!r}, not a pinned release: install it from an index, then lock")
        name = line.split("==", 1)[0]
        if not TORCH_BUILD.match(canonicalize_name(name)):
            pins.append(f'{line} ; python_version == "{python}"')
    header = [
        "# The tested set: every package of a .venv whose `make test` passed, written by `make lock`.",
        "# `make setup` installs with it (pip install -c). torch is left out: TORCH_SPEC installs it first.",
        f"# Tested on Python {python}; on another Python the markers leave the pins out and pip takes the ranges.",
        "# To refresh: `make test-latest`, then `make lock VENV=.venv-latest` (README: Install).",
    ]
    return "\n".join([*header, *sorted(pins, key=str.lower)]) + "\n"


def write_lock(freeze: str, tested_freeze: Path, output: Path) -> int:
    """Write the lock from an environment's ``pip freeze``, if it is the one ``make test`` last passed on.

    Args:
        freeze: the environment's ``pip freeze --exclude-editable`` now.
        tested_freeze: the same, written by ``make test`` after the suite passed.
        output: the lock file.

    Returns:
        The number of pins written.
    """
    if not tested_freeze.is_file():
        raise ConfigError(f"{tested_freeze} not found: run make test in this environment first, then make lock")
    if tested_freeze.read_text(encoding="utf-8") != freeze:
        raise ConfigError(
            f"the packages changed since make test last passed ({tested_freeze}): run make test again, then make lock"
        )
    text = lock_text(freeze)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, text)
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
