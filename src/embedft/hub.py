"""Telling local paths from Hugging Face hub names, and reaching the hub only when it is needed.

The default hub client retries an unreachable host for over a minute before it fails. Here a name that is not in
the local cache is tried only after a quick check that the hub answers at all, so an offline machine gets a clear
one-line error within seconds.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from embedft.errors import DataError, ModelError, first_line

logger = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".yaml", ".yml")


def is_hub_name(name: str) -> bool:
    """True for ``owner/name`` ids; False for packaged names and anything that looks like a path."""
    if name.startswith(("packaged:", ".", "/", "~")) or name.lower().endswith(FILE_SUFFIXES):
        return False
    return bool(HUB_NAME.match(name))


def use_offline_mode(names: Iterable[str]) -> bool:
    """Switch the Hugging Face libraries offline when none of ``names`` is a hub name.

    Must run before transformers, datasets or huggingface_hub are imported: they read these variables once.

    Returns:
        True when offline mode was switched on.
    """
    if any(is_hub_name(name) and not Path(name).exists() for name in names):
        return False
    for variable in OFFLINE_VARIABLES:
        os.environ.setdefault(variable, "1")
    return True


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection within ``timeout`` seconds (and offline mode is off)."""
    if any(os.environ.get(variable, "").lower() in ("1", "true", "yes") for variable in OFFLINE_VARIABLES[:1]):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def is_cached(repo_id: str, repo_type: str, cache_dir: str | None, filename: str) -> bool:
    """Whether ``filename`` of the hub repo is in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, repo_type=repo_type), str)


def offline_message(repo_id: str, kind: str, key: str, cache_dir: str | None) -> str:
    where = cache_dir or "the Hugging Face cache"
    return (
        f"{kind} '{repo_id}' is not in {where} and the hub cannot be reached: it needs a network connection, "
        f"or set {key} to a local path"
    )


def resolve_hub_snapshot(repo_id: str, repo_type: str, cache_dir: str | None) -> str:
    """Return a local folder holding the hub repo: from the cache, else downloaded when the hub answers.

    Raises:
        DataError: (for data sets) not cached and no network.
        ModelError: (for models) not cached and no network.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    error = DataError if repo_type == "dataset" else ModelError
    key = "dataset_name" if repo_type == "dataset" else "model_name"
    try:
        return snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache_dir, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        raise error(offline_message(repo_id, "data set" if repo_type == "dataset" else "model", key, cache_dir))
    logger.info("Downloading %s '%s' from the hub", repo_type, repo_id)
    try:
        return snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache_dir)
    except HfHubHTTPError as exc:
        raise error(f"cannot download {repo_type} '{repo_id}': {first_line(exc)}") from None
