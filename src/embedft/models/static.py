"""Static embedding models distilled from a local SentenceTransformer, for fast offline hard-negative mining.

``mining_model_name: static:<source>`` (``<source>`` being any name
:func:`~embedft.models.sources.resolve_plain_model_source` accepts: ``packaged:all-MiniLM-L6-v2``, a local folder, a
cached hub name) distils the source once into a
sentence-transformers ``StaticEmbedding`` model and caches it, so every later run loads it in a second. A static
model embeds a text as the average of per-token vectors (no attention), which encodes orders of magnitude faster
than a transformer on the CPU.

model2vec's ``distill`` does the same, but its ``distill`` extra pins ``transformers<5.4``; it cannot be installed
next to transformers 5.24, so the recipe is written out here (:func:`distil_static_model`): one forward pass per
vocabulary token, PCA, Zipf weighting.

"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.errors import ModelError, first_line
from embedft.hub import resolve_hub_snapshot
from embedft.io import embedft_cache_folder
from embedft.models.sources import resolve_plain_model_source

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


STATIC_PREFIX = "static:"

# Part of every cache key: raise it whenever the recipe changes, so older cached models are not reused.
DISTILLATION_VERSION = 1

DEFAULT_DIMENSIONS = 256

# Written into every distilled model's folder: what it was distilled from and how.
METADATA_FILE = "embedft_static.json"

# Placeholder tokens that never occur in text (BERT's [unused0]..[unused993], Gemma's <unused0>..).
UNUSED_TOKEN = re.compile(r"^[\[<]unused\d+[\]>]$")

# The probe text whose tokenization shows where the one content token sits between the special tokens.
PROBE_TEXT = "a"


def is_static_name(name: str) -> bool:
    """True for ``static:<source>`` model names."""
    return name.startswith(STATIC_PREFIX)


def static_cache_root(cache_dir: str | None) -> Path:
    """The folder that holds distilled static models: ``<cache_dir>/embedft/static`` when a cache folder is
    configured, else ``$XDG_CACHE_HOME/embedft/static`` (``~/.cache/embedft/static`` when that is unset)."""
    return embedft_cache_folder(cache_dir, "static")


def source_fingerprint(source_path: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file in the source model's folder.

    Part of the cache key, so a model retrained in place (same folder, new weights) is distilled again rather than
    served stale from the cache.
    """
    files = []
    for file in sorted(source_path.rglob("*")):
        if file.is_file() and ".cache" not in file.relative_to(source_path).parts:
            stat = file.stat()
            files.append((file.relative_to(source_path).as_posix(), stat.st_size, stat.st_mtime_ns))
    return files


def cache_folder_name(source_name: str, source_path: Path, dimensions: int) -> str:
    """A readable, stable folder name: the source's last name part, the dimensions, and a hash of everything the
    distilled model depends on (source name and folder, its files, dimensions, recipe version)."""
    key = {
        "source": source_name,
        "path": str(source_path.resolve()),
        "files": source_fingerprint(source_path),
        "dimensions": dimensions,
        "version": DISTILLATION_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", re.split(r"[:/\\]", source_name.rstrip("/\\"))[-1]).strip("-.")
    return f"{stem or 'model'}-{dimensions}d-{digest}"


def local_source_folder(source: str, name: str, cache_dir: str | None, key: str) -> Path:
    """The local folder of the source model, resolved like any configured model name.

    A hub name is taken from the hub cache (downloaded only where the hub answers; offline and not cached, the
    usual one-line ModelError). The snapshot folder names the commit, so a new revision gets a new cache key.
    """
    if not source:
        raise ModelError(f"{key} '{name}' names no model after 'static:': e.g. static:packaged:all-MiniLM-L6-v2")
    if is_static_name(source):
        raise ModelError(f"{key} '{name}' distils a static model from a static model: name the source once")
    resolved, _ = resolve_plain_model_source(source, cache_dir, key)
    path = Path(resolved)
    if path.is_dir():
        return path
    return Path(resolve_hub_snapshot(resolved, "model", cache_dir))


def static_model_path(
    name: str, cache_dir: str | None, key: str = "model_name", dimensions: int = DEFAULT_DIMENSIONS
) -> str:
    """The folder of the static model that ``static:<source>`` names, distilled on first use and cached.

    Args:
        name: ``static:`` followed by any model name embedft accepts (packaged, local folder, cached hub name).
        cache_dir: the configured cache folder; None uses the user cache (see :func:`static_cache_root`).
        key: the config key that named the model, for error messages.
        dimensions: size of the static embeddings (PCA components).

    Returns:
        A local folder that ``SentenceTransformer(path)`` loads.

    Raises:
        ModelError: the source cannot be found (a hub name that is not cached and no network), or a cache folder is
            left incomplete.
    """
    source = name[len(STATIC_PREFIX) :]
    source_path = local_source_folder(source, name, cache_dir, key)
    destination = static_cache_root(cache_dir) / cache_folder_name(source, source_path, dimensions)
    if destination.is_dir():
        if not (destination / "modules.json").is_file():
            raise ModelError(f"the cached static model {destination} is incomplete: delete that folder and run again")
        logger.info("Using the cached static model %s (distilled from %s)", destination, source)
        return str(destination)
    logger.info("Distilling a static model from %s into %s (once; later runs reuse it)", source, destination)
    started = time.perf_counter()
    distil_static_model(str(source_path), destination, dimensions, source_name=source)
    logger.info("Distilled the static model in %.1f s", time.perf_counter() - started)
    return str(destination)


def distil_static_model(
    source_path: str,
    destination: Path,
    dimensions: int = DEFAULT_DIMENSIONS,
    batch_size: int = 1024,
    max_vocabulary: int | None = None,
    source_name: str | None = None,
) -> Path:
    """Distil a sentence-transformers ``StaticEmbedding`` model from the SentenceTransformer in ``source_path``.

    The recipe of model2vec's distillation:

    1. Every vocabulary token of the source's tokenizer, except special tokens ([CLS], [PAD], [UNK], ...) and unused
       placeholders ([unused12]), is run through the whole source model on its own, framed by the model's special
       tokens as a one-token text would be ("[CLS] token [SEP]"), so its vector includes the model's own pooling and
       normalisation. Tokens go in by id, so a ``##ing`` wordpiece is the piece itself, not the text "##ing".
    2. PCA (numpy SVD of the centred vectors) keeps ``dimensions`` components, at most the source's size; with
       as many as the source has, it still centres and rotates, which helps the average of token vectors.
    3. Each token is weighted by log(1 + rank), its 1-based rank in vocabulary order among the kept tokens: the
       Zipf-style frequency proxy of model2vec's ``apply_zipf`` (WordPiece and BPE vocabularies list frequent tokens
       first, so frequent, less informative tokens count less). model2vec's current releases use SIF weighting
       (a / (a + p(rank))) instead.

    Skipped tokens keep zero vectors: the tokenizer still produces them ([UNK]), but they add nothing. The model is
    saved as StaticEmbedding + Normalize (unit vectors, so cosine similarity equals the dot product), with the
    source's tokenizer untruncated (a static model has no window), into a temporary folder beside ``destination``
    that is then renamed: a reader never sees half a model, and when another process published the same model
    meanwhile, that one is kept. Nothing in it is random (SVD signs are fixed as in scikit-learn's ``svd_flip``), so
    the same source gives the same model.

    Args:
        source_path: the source model's local folder.
        destination: the folder to create.
        dimensions: static embedding size.
        batch_size: vocabulary tokens per forward pass.
        max_vocabulary: keep only the first this many tokens (a quick, smaller build, e.g. for tests); None keeps all.
        source_name: the name the source was configured by, recorded in the model's metadata.

    Returns:
        ``destination``.
    """
    import numpy as np
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    if dimensions < 1:
        raise ModelError(f"static model dimensions must be at least 1, got {dimensions}")
    started = time.perf_counter()
    source = load_source(source_path, source_name or source_path)
    tokenizer = standalone_tokenizer(source)
    token_ids = distillable_token_ids(tokenizer, max_vocabulary)
    vectors = encode_tokens(source, token_ids, batch_size)
    vectors = pca(vectors, dimensions)
    vectors *= np.log1p(np.arange(1, len(token_ids) + 1, dtype=np.float64))[:, None]
    weights = np.zeros((tokenizer.get_vocab_size(), vectors.shape[1]), dtype=np.float32)
    weights[token_ids] = vectors
    static = StaticEmbedding(tokenizer, embedding_weights=weights, base_model=source_name or source_path)
    model = SentenceTransformer(modules=[static, Normalize()], device="cpu")
    metadata = {
        "source": source_name or source_path,
        "source_path": str(source_path),
        "dimensions": int(vectors.shape[1]),
        "tokens": len(token_ids),
        "vocabulary_size": tokenizer.get_vocab_size(),
        "weighting": "log(1 + rank)",
        "version": DISTILLATION_VERSION,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return publish(model, destination, metadata)


def load_source(source_path: str, name: str) -> SentenceTransformer:
    """The source model on the CPU, from local files only.

    Raises:
        ModelError: it does not load, or it already is a static model (nothing to distil).
    """
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    try:
        model = SentenceTransformer(source_path, device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load '{name}' to distil a static model from it: {first_line(exc)}") from None
    if isinstance(model[0], StaticEmbedding):
        raise ModelError(f"'{name}' already is a static model: name it without 'static:'")
    return model


def standalone_tokenizer(model: SentenceTransformer) -> Any:
    """A copy of the source's Rust (``tokenizers``) tokenizer with padding and truncation off.

    StaticEmbedding needs a fast tokenizer; a copy leaves the source model's own untouched.

    Raises:
        ModelError: the source has no fast tokenizer (a slow, Python-only one cannot be distilled).
    """
    from tokenizers import Tokenizer

    backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ModelError("cannot distil a static model: the source model has no fast (Rust) tokenizer")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def distillable_token_ids(tokenizer: Any, max_vocabulary: int | None = None) -> list[int]:
    """Every token id in vocabulary order except special tokens and unused placeholders (they never stand for text).

    Raises:
        ModelError: no token is left.
    """
    special = {token_id for token_id, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    vocabulary = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
    kept = [token_id for token, token_id in vocabulary if token_id not in special and not UNUSED_TOKEN.match(token)]
    if max_vocabulary is not None:
        kept = kept[:max_vocabulary]
    if not kept:
        raise ModelError("cannot distil a static model: the source's tokenizer has no ordinary tokens")
    return kept


def encode_tokens(model: SentenceTransformer, token_ids: list[int], batch_size: int) -> np.ndarray:
    """The source model's sentence embedding of each token on its own, in float64, with a progress bar.

    The model's own preprocessing of a one-token probe text gives every input it expects (input_ids, attention
    mask, token type ids, ...) and where the content token sits; each batch swaps in the vocabulary ids there.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    template = model.preprocess([PROBE_TEXT])
    position = content_position(template["input_ids"][0].tolist(), set(model.tokenizer.all_special_ids))
    parts = []
    model.eval()
    with torch.inference_mode(), tqdm(total=len(token_ids), desc="Encoding vocabulary", unit="token") as bar:
        for start in range(0, len(token_ids), batch_size):
            ids = torch.tensor(token_ids[start : start + batch_size], dtype=torch.long)
            features = {
                name: value.expand(len(ids), *value.shape[1:]).clone() if torch.is_tensor(value) else value
                for name, value in template.items()
            }
            features["input_ids"][:, position] = ids
            parts.append(model(features)["sentence_embedding"].float().cpu().numpy())
            bar.update(len(ids))
    return np.concatenate(parts).astype(np.float64)


def content_position(input_ids: list[int], special_ids: set[int]) -> int:
    """Where the one non-special token of the probe text sits, e.g. 1 in ``[CLS] a [SEP]``.

    Raises:
        ModelError: the probe is not exactly one token between special tokens (an unusual tokenizer).
    """
    positions = [index for index, token_id in enumerate(input_ids) if token_id not in special_ids]
    if len(positions) != 1:
        raise ModelError(
            f"cannot distil a static model: the source's tokenizer splits '{PROBE_TEXT}' into {len(positions)} tokens"
        )
    return positions[0]


def pca(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """The centred ``vectors`` projected on their first ``dimensions`` principal components, as float32.

    Capped at the vectors' own size (and their count); each component's sign is fixed so that its largest
    projection is positive, which keeps the result identical across runs and machines.
    """
    import numpy as np

    keep = min(dimensions, vectors.shape[1], vectors.shape[0])
    if keep < dimensions:
        logger.info("The source gives %d-dimensional vectors: the static model keeps %d dimensions", keep, keep)
    centred = vectors - vectors.mean(axis=0)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    scores = left[:, :keep] * singular[:keep]
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(keep)])
    signs[signs == 0] = 1
    return (scores * signs).astype(np.float32)


def publish(model: SentenceTransformer, destination: Path, metadata: dict[str, Any]) -> Path:
    """Save ``model`` into ``destination`` atomically: write a temporary folder beside it, then rename it.

    When ``destination`` already holds a model (another process published it meanwhile), that one is kept and
    this copy is dropped.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        scratch.chmod(0o755)
        model.save(str(scratch), create_model_card=False)
        (scratch / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        for path in scratch.rglob("*"):  # mkdtemp and safetensors write owner-only files; the cache may be shared
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            scratch.rename(destination)
        except OSError:
            if not (destination / "modules.json").is_file():
                raise
            logger.info("Another process published %s meanwhile: using that one", destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return destination
