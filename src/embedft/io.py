"""Files embedft writes and reads back: one atomic write (a temporary file, then a rename), JSON, and the
folder where it keeps what it derives once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedft.errors import OutputError, first_line


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to, renamed onto ``path`` when the block ends and removed when it
    fails: a reader never sees half a file, and an interrupted write never looks complete. Every file embedft writes
    for a later reader goes through here.

    Example::

        with atomic_path(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.unlink(missing_ok=True)  # left by a write that was killed
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (:func:`atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (:func:`atomic_path`), indented, non-ASCII kept as it is."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file this suite wrote; an OutputError (one line) when it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {first_line(exc)}") from None


def embedft_cache_folder(cache_dir: str | None, name: str) -> Path:
    """``<cache_dir>/embedft/<name>`` when a cache folder is configured, else ``$XDG_CACHE_HOME/embedft/<name>``
    (``~/.cache/embedft/<name>`` when that is unset): where embedft keeps what it derives once and reuses."""
    if cache_dir:
        base = Path(cache_dir).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "embedft" / name
