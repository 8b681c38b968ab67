"""Reading a config: a YAML file and ``key=value`` overrides, built into the schema's dataclasses and validated;
and writing one back.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import typing
from pathlib import Path
from typing import Any

import yaml

from embedft.config.schema import SECTIONS, RunConfig, TrainingConfig, all_keys, options
from embedft.config.trainer_arguments import OWNED_TRAINER_ARGUMENTS, trainer_argument, trainer_argument_types
from embedft.config.types import coerce, describe
from embedft.config.validation import refuse_secrets, validate
from embedft.errors import ConfigError
from embedft.masking import mask_secrets

logger = logging.getLogger(__name__)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides and return the validated :class:`RunConfig`.

    Args:
        path: YAML file; None starts from the embedded defaults.
        overrides: strings such as ``"num_epochs=1"`` or ``"mining.num_negatives=2"``; values are parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or impossible value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
    parsed = [(override, *parse_override(override)) for override in overrides or []]
    refuse_repeated_overrides(parsed)
    for _, key, value in parsed:
        set_dotted(raw, key, value)
    move_deprecated_warmup(raw)
    config = build(RunConfig, raw, prefix="")
    validate(config)
    refuse_secrets(config.to_dict())
    return config


def move_deprecated_warmup(raw: dict[str, Any]) -> None:
    """Turn the deprecated ``training.warmup_ratio`` into the one warm-up setting, the top-level ``warmup_ratio``.

    Configs saved by earlier runs hold ``training.warmup_ratio: null`` and must still resume; a number keeps its old
    meaning (it overrode the top-level value), with a warning that says what to write instead.
    """
    training = raw.get("training")
    if not isinstance(training, dict) or "warmup_ratio" not in training:
        return
    value = training.pop("warmup_ratio")
    if value is not None:
        logger.warning(
            "'training.warmup_ratio' is deprecated: the top-level warmup_ratio is the one warm-up setting; using "
            "warmup_ratio: %s (write it there and remove training.warmup_ratio)",
            value,
        )
        raw["warmup_ratio"] = value


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping, where PyYAML would silently keep the last."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (never the unsafe loader) that refuses a key given twice in one mapping.

    A user who edits one copy of a repeated key and not the other would otherwise never learn why nothing changed.
    The error names the dotted key (``mining.num_negatives``) and both lines.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.prefixes: dict[int, str] = {}  # id of a mapping node -> the dotted key it stands under

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        prefix = self.prefixes.get(id(node), "")
        seen: dict[Any, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base' keys are overridden by the explicit ones on purpose
            key = self.construct_object(key_node, deep=True)
            if isinstance(value_node, yaml.MappingNode):
                self.prefixes[id(value_node)] = f"{prefix}{key}."
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not key_node.start_mark:
                second = key_node.start_mark
                where = (
                    f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"
                    if first.line == second.line
                    else f"line {first.line + 1} and line {second.line + 1}"
                )
                raise DuplicateKeyError(None, None, f"'{prefix}{key}' is given twice, at {where}", second)
        return super().construct_mapping(node, deep=deep)


def yaml_error_message(exc: yaml.YAMLError) -> str:
    """PyYAML's own reason and where it found it (line and column from 1), with the construct it was reading when
    that started elsewhere: ``could not find expected ':' at line 21, column 1 (while scanning a simple key at line
    20, column 1)``."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    text = f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        text += f" ({context})"
    return text


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with :class:`StrictLoader` (safe, and a key given twice is an error)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass CONFIG=path/to/config.yaml")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # a SafeLoader
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {path}: {exc.problem}: keep one of them") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_error_message(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, not a {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b=value"`` into the dotted key and the YAML-parsed value."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not key=value: write e.g. SET=\"num_epochs=1 batch_size=16\"")
    stripped = value.strip()
    if "#" in stripped and stripped[0] not in "'\"[{":
        return key, value  # YAML would drop " #..." as a comment: on one line it is text ("Q #1: ")
    try:
        parsed = yaml.load(value, Loader=StrictLoader) if stripped else None  # a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(f"override '{text}': {exc.problem}: keep one of them") from None
    except yaml.YAMLError:
        return key, value
    if isinstance(parsed, dict) and not stripped.startswith("{"):
        # "query: " reads as a mapping in YAML; on one line it is meant as text (a prompt). {a: 1} stays a mapping.
        return key, value
    return key, parsed


def override_leaves(key: str, value: Any) -> list[str]:
    """The dotted keys an override sets: its key, or each key of a mapping it gives (``mining={a: 1}`` sets
    ``mining.a``)."""
    if isinstance(value, dict) and value:
        return [leaf for name, item in value.items() for leaf in override_leaves(f"{key}.{name}", item)]
    return [key]


def refuse_repeated_overrides(parsed: list[tuple[str, str, Any]]) -> None:
    """Raise a ConfigError when two overrides ``(text, key, value)`` set the same key (or one a section the other
    sets a key of): the last would win silently, as a key given twice in YAML would."""
    given: list[tuple[str, str]] = []  # (dotted key, the override that set it)
    for text, key, value in parsed:
        leaves = override_leaves(key, value)
        for leaf in leaves:
            for other, earlier in given:
                if leaf == other or leaf.startswith(f"{other}.") or other.startswith(f"{leaf}."):
                    named = max(leaf, other, key=len)
                    raise ConfigError(
                        f"'{named}' is set twice in the overrides ('{earlier}' and '{text}'): keep one of them"
                    )
        given += [(leaf, text) for leaf in leaves]


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for the key ``"a.b"``; a mapping given for a whole section (``mining={...}``)
    changes the keys it names and keeps the section's others."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
        node = child
    if key in SECTIONS and isinstance(value, dict) and isinstance(node.get(key), dict):
        value = {**node[key], **value}
    node[parts[-1]] = value


def build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Create ``cls`` from ``raw``, checking every key and value type; under ``training:`` a key that is not
    embedft's own but a field of the trainer's arguments goes to ``trainer_arguments``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in options(cls)}
    kwargs: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            if cls is TrainingConfig and (key in OWNED_TRAINER_ARGUMENTS or key in trainer_argument_types()):
                passthrough[key] = trainer_argument(dotted, key, value)
                continue
            raise ConfigError(unknown_key_message(str(dotted)))
        if key in SECTIONS and not prefix:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"'{dotted}' must be a section of keys (e.g. {dotted}:\\n  key: value)")
            kwargs[key] = build(SECTIONS[key], value, prefix=f"{key}.")
        else:
            kwargs[key] = coerce(dotted, value, hints[key])
    if passthrough:
        kwargs["trainer_arguments"] = passthrough
    return cls(**kwargs)


def unknown_key_message(dotted: str) -> str:
    """One line naming the unknown key and the closest valid ones; the trainer's argument names are candidates too
    (as ``training.<name>``) for a key under ``training:`` or one close to none of embedft's own."""
    candidates = all_keys()
    leaf = dotted.rsplit(".", 1)[-1]
    if dotted.startswith("training.") or not difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6):
        trainer = [f"training.{name}" for name in trainer_argument_types() if name not in OWNED_TRAINER_ARGUMENTS]
        candidates += [key for key in trainer if key not in candidates]
    close = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    if not close:
        close = [key for key in candidates if key.rsplit(".", 1)[-1] == leaf][:1]
    if not close:
        close = difflib.get_close_matches(leaf, candidates, n=1, cutoff=0.6)
    hint = f": did you mean '{close[0]}'?" if close else ": see docs/configuration.md"
    return f"unknown config key '{dotted}'{hint}"


def save_config(config: RunConfig, path: Path) -> None:
    """Write the resolved configuration as YAML, with secrets masked, so the run can be repeated exactly."""
    path.write_text(yaml.safe_dump(mask_secrets(config.to_dict()), sort_keys=False), encoding="utf-8")


def reference() -> str:
    """A Markdown table of every option: key, type, default and help."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def rows(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in options(cls):
            if f.name in SECTIONS and not prefix:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = default if isinstance(default, str) else json.dumps(default)
            lines.append(
                f"| `{prefix}{f.name}` | {describe(hints[f.name])} | `{shown}` | {f.metadata.get('help', '')} |"
            )

    rows(RunConfig, "")
    for name, cls in SECTIONS.items():
        rows(cls, f"{name}.")
    return "\n".join(lines)
