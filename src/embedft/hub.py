"""Telling local paths from Hugging Face hub names, reaching the hub only when it is needed, and pushing a final
model to it (``hub_model_id``).

The default hub client retries an unreachable host for over a minute before it fails. Here a name that is not in
the local cache is tried only after a quick check that the hub answers at all, so an offline machine gets a clear
one-line error within seconds.

"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft import __version__
from embedft.errors import DataError, ModelError, first_line
from embedft.masking import mask_secrets

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer

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
    # A static model distilled from a hub model ("static:org/name") needs the hub as much as the model itself.
    sources = [name.removeprefix("static:") for name in names]
    if any(is_hub_name(name) and not Path(name).exists() for name in sources):
        return False
    for variable in OFFLINE_VARIABLES:
        os.environ.setdefault(variable, "1")
    return True


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers an HTTP request within about ``timeout`` seconds (and offline mode is off).

    The request goes the way huggingface_hub's own downloads go: an httpx client that honours ``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (``trust_env``), so a machine that reaches the hub only through a
    proxy is not reported offline. Any HTTP status counts as an answer; connection, DNS, TLS, proxy and timeout
    errors do not. A fresh client is built on each call rather than taking ``huggingface_hub.get_session()``: that
    shared client reads the proxy variables once, when it is first built, and its request hook refuses every request
    when ``HF_HUB_OFFLINE`` was set at import time, whatever the variable says now.
    """
    if any(os.environ.get(variable, "").lower() in ("1", "true", "yes") for variable in OFFLINE_VARIABLES[:1]):
        return False
    try:
        import httpx2 as httpx  # huggingface_hub 2.x
    except ImportError:  # huggingface_hub 1.x uses httpx itself
        import httpx
    import huggingface_hub

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/") or "https://huggingface.co"
    headers = {"user-agent": f"embedft/{__version__}; hf_hub/{huggingface_hub.__version__}"}
    try:
        # Settings as huggingface_hub's default client (trust_env, default TLS verification); no redirects, as the
        # first answer is enough. ValueError and ImportError come from proxy variables httpx cannot use.
        with httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), trust_env=True) as client:
            client.head(endpoint + "/")
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, ImportError) as exc:
        logger.info("The hub at %s did not answer: %s: %s", endpoint, type(exc).__name__, first_line(exc))
        return False
    return True


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


def resolve_hub_snapshot(repo_id: str, repo_type: str, cache_dir: str | None, revision: str | None = None) -> str:
    """Return a local folder holding the hub repo: from the cache, else downloaded when the hub answers.

    ``revision`` (a branch, tag or commit; None: main) picks the snapshot, in the cache as on the hub.

    Raises:
        DataError: (for data sets) not cached and no network.
        ModelError: (for models) not cached and no network.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    error = DataError if repo_type == "dataset" else ModelError
    key = "dataset_name" if repo_type == "dataset" else "model_name"
    try:
        return snapshot_download(
            repo_id, repo_type=repo_type, cache_dir=cache_dir, revision=revision, local_files_only=True
        )
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        raise error(offline_message(repo_id, "data set" if repo_type == "dataset" else "model", key, cache_dir))
    logger.info("Downloading %s '%s' from the hub", repo_type, repo_id)
    try:
        return snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache_dir, revision=revision)
    except HfHubHTTPError as exc:
        raise error(f"cannot download {repo_type} '{repo_id}': {first_line(exc)}") from None


def push_model(model: SentenceTransformer, folder: Path, repo_id: str, private: bool = True) -> dict[str, Any]:
    """Upload the saved model ``folder`` (weights, config, card, as saved) to the hub repo ``repo_id``.

    It runs after the run has been scored, so a failure must not lose it: an unreachable hub, a missing login, a
    refused repo or any other upload error is logged as one warning (no token ever appears: the message is masked)
    and reported in the returned record; the local model stays where it is, to be pushed later by hand.

    Args:
        model: the model that was saved to ``folder`` (its card data records the hub id).
        folder: the saved model folder that is uploaded as it is.
        repo_id: ``user/name`` or ``org/name``; created when missing.
        private: create the repo private.

    Returns:
        ``{"model_id", "pushed": True, "url"}`` or ``{"model_id", "pushed": False, "error"}``.
    """
    later = f"the model is kept in {folder}: push it later with 'hf upload {repo_id} {folder}'"
    if not hub_reachable():
        error = "the hub cannot be reached (no network, or HF_HUB_OFFLINE is set)"
        logger.warning("Not pushed to %s: %s; %s", repo_id, error, later)
        return {"model_id": repo_id, "pushed": False, "error": error}
    logger.info("Pushing %s to the hub as %s (%s)", folder, repo_id, "private" if private else "public")
    try:
        url = model.push_to_hub(
            repo_id,
            private=private,
            exist_ok=True,
            local_model_path=str(folder),
            commit_message="Upload a model fine-tuned with embedft",
        )
    except Exception as exc:  # noqa: BLE001 - any hub or network failure; the finished run must still be written
        error = mask_secrets(f"{type(exc).__name__}: {first_line(exc)}")
        logger.warning("Not pushed to %s: %s; %s", repo_id, error, later)
        return {"model_id": repo_id, "pushed": False, "error": error}
    logger.info("Pushed to the hub: %s", url)
    return {"model_id": repo_id, "pushed": True, "url": str(url)}
