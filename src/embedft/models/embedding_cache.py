"""Embeddings kept on disk, so that no text is encoded twice by the same model.

Encoding is the cost that grows with the data: mining, the baseline evaluation and inference all encode the same
answer pool. An :class:`EmbeddingStore` holds the embeddings of one (model weights and layout, query or document
side, prompt) combination, keyed by a hash of each text; a text that is already there is read back instead of
encoded. The store writes shards of at most :data:`SHARD_ROWS` rows as it goes, so memory stays bounded and an
interrupted encode keeps what it finished.

Stores live under ``<cache_dir>/embedft/embeddings`` (``~/.cache/embedft/embeddings`` without a cache folder), so a
rerun with the same inputs encodes nothing, and when the mining model is the base model the baseline evaluation
reuses the pool embeddings that mining computed. The final model's pool embeddings are kept in its run folder for
``make infer-embed``.

"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from tqdm.auto import tqdm

from embedft.io import atomic_path, embedft_cache_folder
from embedft.models.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT_NAMES, encode_prompt

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


Side = Literal["query", "document"]

SHARD_ROWS = 65_536  # rows per shard file: what an interrupted encode can lose

ENCODE_BLOCK = 1_024  # texts per encode call: the progress bar's step

KEY_BYTES = 20  # sha1 of the text


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """A fixed-width hash per text (``S20``), the store's key."""
    return np.array([hashlib.sha1(text.encode("utf-8")).digest() for text in texts], dtype=f"S{KEY_BYTES}")


def model_fingerprint(model: SentenceTransformer) -> str:
    """A hash of everything that decides a model's embeddings: its modules as printed (architecture, pooling,
    max_seq_length, normalisation), its prompts and every weight tensor."""
    import torch

    digest = hashlib.sha256(repr(model).encode("utf-8"))
    digest.update(repr(sorted(model.prompts.items())).encode("utf-8"))
    for name, tensor in model.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("utf-8"))
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    return digest.hexdigest()


def embedding_cache_root(cache_dir: str | None) -> Path:
    """The shared embedding cache's folder (see :func:`embedft_cache_folder`)."""
    return embedft_cache_folder(cache_dir, "embeddings")


class EmbeddingStore:
    """The embeddings of one model and side (query or document) in a folder of ``.npy`` shards.

    Each shard is a pair of files, ``<name>.vectors.npy`` (float32, one row per text) and ``<name>.keys.npy``
    (the texts' hashes); the keys file is renamed into place last, so a half-written shard is never read. Only the
    keys are held in memory (20 bytes a text); vectors are read from their shard when asked for.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.encoded = 0  # texts this object encoded (the rest came from disk)
        self._keys = np.empty(0, dtype=f"S{KEY_BYTES}")  # sorted
        self._shard = np.empty(0, dtype=np.int32)
        self._row = np.empty(0, dtype=np.int64)
        self._names: list[str] = []  # shard names, in the order _shard numbers them
        self._refresh()

    def _refresh(self) -> None:
        """Read the keys of every complete shard (new ones written by this or another process)."""
        if not self.folder.is_dir():
            return
        names = sorted(path.name[: -len(".keys.npy")] for path in self.folder.glob("*.keys.npy"))
        new = [name for name in names if name not in self._names]
        if not new:
            return
        keys, shards, rows = [self._keys], [self._shard], [self._row]
        for name in new:
            shard_keys = np.load(self.folder / f"{name}.keys.npy")
            self._names.append(name)
            keys.append(shard_keys)
            shards.append(np.full(len(shard_keys), len(self._names) - 1, dtype=np.int32))
            rows.append(np.arange(len(shard_keys), dtype=np.int64))
        all_keys, all_shards, all_rows = np.concatenate(keys), np.concatenate(shards), np.concatenate(rows)
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._shard, self._row = all_keys[order], all_shards[order], all_rows[order]

    def __len__(self) -> int:
        return len(self._keys)

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key in the sorted index, or -1 where it is not stored."""
        if len(self._keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        positions = np.searchsorted(self._keys, keys)
        found = positions < len(self._keys)
        found[found] = self._keys[positions[found]] == keys[found]
        return np.where(found, positions, -1)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write one shard (keys last, so a reader never sees a shard without its vectors)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}"
        for suffix, array in ((".vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32)), (".keys.npy", keys)):
            with atomic_path(self.folder / f"{name}{suffix}") as temporary, open(temporary, "wb") as handle:
                np.save(handle, array)
        self._refresh()

    def gather(self, texts: Sequence[str], keys: np.ndarray | None = None) -> np.ndarray:
        """The stored embeddings of ``texts``, in their order (every text must be stored)."""
        keys = text_keys(texts) if keys is None else keys
        positions = self.locate(keys)
        if (positions < 0).any():
            raise KeyError(f"{int((positions < 0).sum())} texts are not in the embedding store {self.folder}")
        shards, rows = self._shard[positions], self._row[positions]
        result: np.ndarray | None = None
        for shard in np.unique(shards):
            # One shard mapped at a time and unmapped after: mapped pages count as this process's memory.
            vectors = np.load(self.folder / f"{self._names[shard]}.vectors.npy", mmap_mode="r")
            if result is None:
                result = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            mask = shards == shard
            result[mask] = vectors[rows[mask]]
            del vectors
        return result if result is not None else np.empty((0, 0), dtype=np.float32)

    def encode(
        self,
        model: SentenceTransformer,
        texts: Sequence[str],
        side: Side,
        batch_size: int,
        description: str = "Encoding",
    ) -> np.ndarray:
        """Make sure every text is stored (encoding only the missing ones, with ``encode_query`` or
        ``encode_document``) and return the keys of ``texts``, for :meth:`gather`."""
        keys = text_keys(texts)
        missing = np.flatnonzero(self.locate(keys) < 0)
        if len(missing):
            # Each distinct missing text once, longest first: blocks of similar length pad little (what encode()
            # does within one call, here across the whole set).
            _, first = np.unique(keys[missing], return_index=True)
            missing = missing[first]
            missing = missing[np.argsort([-len(texts[i]) for i in missing], kind="stable")]
        logger.info(
            "%s %d texts: %d from the embedding cache, %d to encode (%s)",
            description,
            len(texts),
            len(texts) - len(missing),
            len(missing),
            self.folder,
        )
        if len(missing) == 0:
            return keys
        encode = model.encode_query if side == "query" else model.encode_document
        pending_keys: list[np.ndarray] = []
        pending_vectors: list[np.ndarray] = []
        with tqdm(total=len(missing), desc=description, unit="texts") as progress:
            for start in range(0, len(missing), ENCODE_BLOCK):
                block = missing[start : start + ENCODE_BLOCK]
                vectors = encode(
                    [texts[i] for i in block], batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
                )
                pending_keys.append(keys[block])
                pending_vectors.append(np.asarray(vectors, dtype=np.float32))
                self.encoded += len(block)
                progress.update(len(block))
                if sum(len(k) for k in pending_keys) >= SHARD_ROWS or start + ENCODE_BLOCK >= len(missing):
                    self.add(np.concatenate(pending_keys), np.concatenate(pending_vectors))
                    pending_keys, pending_vectors = [], []
        return keys


class EmbeddingCache:
    """The stores of every model a run uses, in one folder: ``<root>/<fingerprint of model, side and prompt>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._stores: dict[str, EmbeddingStore] = {}

    def store(self, model: SentenceTransformer, side: Side) -> EmbeddingStore:
        """The store of ``model``'s ``side`` embeddings (the model's weights as they are now)."""
        prompt = encode_prompt(model, QUERY_PROMPT_NAMES if side == "query" else DOCUMENT_PROMPT_NAMES)
        key = f"{model_fingerprint(model)}|{side}|{prompt}"
        if getattr(model, "encoding_precision", "fp32") == "bf16":  # fp32 keeps the key it always had
            key += "|bf16"
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        if name not in self._stores:
            self._stores[name] = EmbeddingStore(self.root / name)
        return self._stores[name]

    def embeddings(
        self, model: SentenceTransformer, texts: Sequence[str], side: Side, batch_size: int, description: str
    ) -> np.ndarray:
        """``model``'s embeddings of ``texts`` (float32, as the model returns them), encoding only new texts."""
        store = self.store(model, side)
        return store.gather(texts, store.encode(model, texts, side, batch_size, description))


@contextmanager
def cache_or_scratch(cache: EmbeddingCache | None) -> Iterator[EmbeddingCache]:
    """``cache`` itself, or when it is None a temporary cache removed when the block ends: the one place that chooses
    between a kept cache and a scratch folder (mining called on its own, a run with ``embedding_cache: false``)."""
    if cache is not None:
        yield cache
        return
    with tempfile.TemporaryDirectory(prefix="embedft-embeddings-") as folder:
        yield EmbeddingCache(folder)


def configured_cache(enabled: bool, cache_dir: str | None) -> AbstractContextManager[EmbeddingCache]:
    """A run's embedding cache (``embedding_cache``): the shared one under ``cache_dir``, or a scratch folder that
    the run's stages share and that is removed when the run ends."""
    return cache_or_scratch(EmbeddingCache(embedding_cache_root(cache_dir)) if enabled else None)
