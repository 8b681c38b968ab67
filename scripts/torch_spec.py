#!/usr/bin/env python3
"""Print the torch requirement `make setup` installs first (the Makefile's TORCH_SPEC default): the CPU wheel on a
machine without an NVIDIA driver, else the CUDA build the driver can run.

Runs with the system Python before .venv exists, so it uses the standard library only. TORCH_SPEC=... on the make
command line always wins over it.
"""

from __future__ import annotations

import re
import shutil
import subprocess

TORCH = "torch==2.13.0"
INDEX = "https://download.pytorch.org/whl"
# PyTorch's CUDA wheel indexes, newest first, each with the oldest driver CUDA version that runs it.
CUDA_INDEXES = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"))


def torch_spec(nvidia_smi: str | None) -> str:
    """The requirement for a machine whose ``nvidia-smi`` printed ``nvidia_smi`` (None: no NVIDIA driver).

    Without a driver: the CPU wheel, from PyTorch's CPU index as an extra index (PyPI's Linux torch is the multi-GB
    CUDA build; where that index cannot be reached, pip falls back to PyPI). With one: the newest CUDA build its
    driver supports (``CUDA Version: X.Y`` in nvidia-smi's header), else PyPI's default build.
    """
    if nvidia_smi is None:
        return f"{TORCH} --extra-index-url {INDEX}/cpu"
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", nvidia_smi)
    if found is None:
        return TORCH
    driver = (int(found.group(1)), int(found.group(2)))
    for oldest, tag in CUDA_INDEXES:
        if driver >= oldest:
            return f"{TORCH} --index-url {INDEX}/{tag}"
    return TORCH


def nvidia_smi_output() -> str | None:
    """What ``nvidia-smi`` prints, or None where it is missing or fails (no NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    print(torch_spec(nvidia_smi_output()))
