"""Loading SentenceTransformer models as the config says: window, prompts, fp32 weights; static models named
``static:<source>`` are distilled on first use.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from embedft.config.schema import RunConfig
from embedft.errors import ModelError, first_line
from embedft.models.prompts import DOCUMENT_PROMPT_NAMES, QUERY_PROMPT_NAMES
from embedft.models.sources import resolve_plain_model_source
from embedft.models.static import is_static_name, static_model_path

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer

logger = logging.getLogger(__name__)


def resolve_model_source(name: str, cache_dir: str | None, key: str = "model_name") -> tuple[str, bool]:
    """Turn a configured model name into what ``SentenceTransformer`` loads: :func:`resolve_plain_model_source`, or
    for ``static:<source>`` (``<source>`` any of the other forms) the folder of a static embedding model distilled
    from the source on first use and cached (:mod:`embedft.models.static`). A hub repo that already is a static model
    (e.g. ``sentence-transformers/static-retrieval-mrl-en-v1``) is named as any hub model.

    Returns:
        ``(name_or_path, local_files_only)``: local files only for packaged models, local folders, distilled static
        models and cached hub models, so none of them touches the network.

    Raises:
        ModelError: a path that does not exist, or a hub name that is neither cached nor reachable.
    """
    if is_static_name(name):
        return static_model_path(name, cache_dir, key), True
    return resolve_plain_model_source(name, cache_dir, key)


def load_model(
    name: str,
    device: str,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
    max_seq_length: int | None = None,
    key: str = "model_name",
    use_prompts: bool = True,
    prompts: dict[str, str] | None = None,
) -> SentenceTransformer:
    """Load a SentenceTransformer on ``device``.

    Args:
        name: packaged name, local folder or hub name.
        device: torch device string.
        cache_dir: hub cache folder.
        trust_remote_code: allow the model repo's own code (off by default).
        max_seq_length: truncate inputs to this many tokens (None keeps the model's).
        key: the config key that named the model, for error messages.
        use_prompts: keep the model's own prompts; False drops them, so every text is encoded as it is.
        prompts: custom prompts by name (``query``, ``document``) set over the model's own, so that every stage
            (mining, training, evaluation, inference) applies them and the saved model keeps them.
    """
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformer

    source, local_only = resolve_model_source(name, cache_dir, key)
    try:
        model = SentenceTransformer(
            source,
            device=device,
            cache_folder=cache_dir,
            trust_remote_code=trust_remote_code,
            local_files_only=local_only,
            # fp32 whatever dtype the weights were saved in: baseline and final are scored alike, and mixed
            # precision training keeps fp32 master weights.
            model_kwargs={"dtype": torch.float32},
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {key} '{name}': {first_line(exc)}") from None
    if max_seq_length is not None and has_window(model):
        model.max_seq_length = max_seq_length
    if not use_prompts:
        model.prompts = {}
        model.default_prompt_name = None
    else:
        fill_document_prompt(model)
        model.prompts.update(prompts or {})
    return model


def has_window(model: SentenceTransformer) -> bool:
    """Whether the model's first module has a settable input window (a static model averages every token)."""
    prop = getattr(type(model[0]), "max_seq_length", None)
    return not isinstance(prop, property) or prop.fset is not None


def fill_document_prompt(model: SentenceTransformer) -> None:
    """Give an empty ``document`` prompt the model's own ``passage`` (or ``corpus``) prompt.

    ``encode_document`` documents a fallback from ``document`` to ``passage`` to ``corpus``, but every loaded
    model gets an empty ``document`` placeholder (``_default_prompts``), so an e5-style model saved with
    ``{"query": "query: ", "passage": "passage: "}`` would never see its passage prompt. Filling the placeholder
    makes ``encode_document`` (mining, evaluation, inference), training and the saved model all use it.
    """
    if model.prompts.get("document") != "":
        return
    for name in DOCUMENT_PROMPT_NAMES[1:]:
        if model.prompts.get(name):
            model.prompts["document"] = model.prompts[name]
            return


def load_configured_model(config: RunConfig, name: str, device: str, key: str) -> SentenceTransformer:
    """:func:`load_model` with the config's cache folder, remote-code, length and prompt settings."""
    return load_model(
        name,
        device,
        config.cache_dir,
        config.trust_remote_code,
        config.max_seq_length,
        key,
        config.use_prompts,
        configured_prompts(config, name, key),
    )


def configured_prompts(config: RunConfig, name: str, key: str) -> dict[str, str]:
    """The ``query_prompt``/``document_prompt`` the config sets, as model prompt names (``query``, ``document``).

    They are instructions for ``model_name``: every model that stands for it gets them (the trained model, the saved
    final model, a model scored or searched with ``MODEL=``, the base guide), and so does the mining model when it is
    ``model_name`` itself (the default). A different mining model keeps its own prompts: another model's
    instruction would only shift its embeddings.

    Args:
        config: the run configuration.
        name: the model being loaded.
        key: the config key (or argument) that named it; ``mining_model_name`` for the mining model and a mining guide.
    """
    if key == "mining_model_name" and name != config.model_name:
        return {}
    given = {QUERY_PROMPT_NAMES[0]: config.query_prompt, DOCUMENT_PROMPT_NAMES[0]: config.document_prompt}
    return {prompt_name: prompt for prompt_name, prompt in given.items() if prompt is not None}


def warn_if_truncated(
    model: SentenceTransformer, texts: list[str], what: str = "answers", sample_size: int = 20_000
) -> int:
    """Warn once when texts are longer than the model's window (they are cut there); return how many are.

    Above ``sample_size`` texts a seeded sample is counted and the total estimated from it: tokenizing a million
    answers only to warn would take minutes. Counting needs the model's tokenizer; models without a Hugging Face
    tokenizer are skipped (returns 0).
    """
    window = model.max_seq_length
    tokenizer = getattr(model, "tokenizer", None)
    if not window or not texts or not callable(tokenizer):
        return 0
    checked = texts if len(texts) <= sample_size else random.Random(0).sample(texts, sample_size)
    longer = 0
    for start in range(0, len(checked), 4096):
        ids = tokenizer(checked[start : start + 4096], add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        longer += sum(len(tokens) > window for tokens in ids)
    if longer and len(checked) < len(texts):
        longer = round(longer * len(texts) / len(checked))
        logger.warning(
            "About %d of %d %s (%.0f%% of a sample of %d) are longer than the model's %d-token window and are "
            "truncated to it (raise max_seq_length if the model allows, or split long %s)",
            longer,
            len(texts),
            what,
            100 * longer / len(texts),
            len(checked),
            window,
            what,
        )
    elif longer:
        logger.warning(
            "%d of %d %s are longer than the model's %d-token window and are truncated to it "
            "(raise max_seq_length if the model allows, or split long %s)",
            longer,
            len(texts),
            what,
            window,
            what,
        )
    return longer


def is_static(model: SentenceTransformer) -> bool:
    """True for a model that embeds with a StaticEmbedding (token lookup, no transformers tokenizer)."""
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    return any(isinstance(module, StaticEmbedding) for module in model.modules())
