"""The device and the mixed precision a stage runs on, checked against this machine."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embedft.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)


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


def encoding_precision(setting: str, device: str) -> str:
    """What a stage encodes in on ``device``: ``bf16`` or ``fp32`` as configured (``evaluation.precision``,
    ``mining.precision``), and for ``auto`` bf16 where the hardware computes in it natively (an Ampere-or-later GPU,
    a CPU with AVX512-BF16 or AMX: 1.8x faster on such a CPU, cosine >= 0.9999 to fp32), else fp32."""
    import torch

    if setting != "auto":
        return setting
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if gpu_has_bf16() else "fp32"
    return "bf16" if kind == "cpu" and cpu_has_bf16() else "fp32"


@contextmanager
def encoding(setting: str, model: Any) -> Iterator[str]:
    """Let ``model`` encode as :func:`encoding_precision` says on its device, within the block: in bf16, its forward
    pass runs under torch's autocast (the weights stay fp32, the embeddings come out fp32, and what is computed from
    them, similarities and rankings, stays fp32). Yields the precision, for ``metrics.json``; the embedding cache
    keeps bf16 embeddings apart (``model.encoding_precision``)."""
    import torch

    precision = encoding_precision(setting, str(model.device))
    if precision != "bf16":
        yield precision
        return
    kind, forward = model.device.type, model.forward

    def autocast_forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    model.forward, model.encoding_precision = autocast_forward, precision
    try:
        yield precision
    finally:
        del model.forward, model.encoding_precision
