"""A YAML value checked against an option's type annotation, and the type's name in an error."""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal

from embedft.errors import ConfigError


def describe(annotation: Any) -> str:
    """A short human name for a type annotation."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return f"a list of {describe(typing.get_args(annotation)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}.get(
        annotation, str(annotation)
    )


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` as ``annotation`` or raise a ConfigError that names the key and the expected type."""
    ok, converted = _try_coerce(value, annotation)
    if not ok:
        raise ConfigError(f"'{key}' must be {describe(annotation)}, got {value!r}")
    return converted


def _try_coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return (value in typing.get_args(annotation)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            ok, converted = _try_coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            # One item stands for a list of one, as the trainer takes report_to="wandb".
            ok, converted = _try_coerce(value, item_type)
            return (True, [converted]) if ok and value is not None else (False, value)
        items = [_try_coerce(item, item_type) for item in value]
        return all(ok for ok, _ in items), [converted for _, converted in items]
    if annotation is type(None):
        return value is None, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return math.isfinite(value), float(value)
            except OverflowError:  # an integer too large for a float
                return False, value
        # PyYAML reads 3e-5 (no dot) as a string; accept it as the number it clearly is.
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return False, value
            return math.isfinite(number), number
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    return isinstance(value, annotation), value
