"""Access tokens and URL passwords masked out of everything embedft writes."""

from __future__ import annotations

import re
from typing import Any

# Hugging Face access tokens, and the password part of user:password@ in URLs.
SECRET_PATTERNS = (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"))

MASK = "***"


def mask_secrets(value: Any) -> Any:
    """``value`` with every token or URL credential inside its strings replaced by ``***``.

    No option holds a secret (hub access uses ``HF_TOKEN`` or ``hf auth login``), but a path or name may carry
    one pasted by mistake; the config saved with a run must not keep it.
    """
    if isinstance(value, str):
        for pattern in SECRET_PATTERNS:
            value = pattern.sub(MASK, value)
        return value
    if isinstance(value, dict):
        return {key: mask_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value
