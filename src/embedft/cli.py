"""What every command-line script shares: arguments, logging, and one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from embedft.errors import ConfigError, EmbedftError

EXIT_USER_ERROR = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_config_arguments(parser: argparse.ArgumentParser, config_default: str | None) -> None:
    """``--config PATH`` and trailing ``key=value`` overrides."""
    parser.add_argument("--config", default=config_default, help="YAML config file (default: %(default)s).")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="Override single config keys, e.g. num_epochs=1 mining.num_negatives=2.",
    )


def split_overrides(line: str) -> list[str]:
    """``key=value`` overrides from one string, split as the shell splits words: ``"a=1 b='x y'"`` gives
    ``["a=1", "b=x y"]``.

    Raises:
        ConfigError: unbalanced quotes.
    """
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise ConfigError(f"cannot split SET into key=value words ({exc}): balance its quotes") from None


def setup_logging(log_file: Path | None = None) -> None:
    """Log INFO to stderr (and to ``log_file``); keep the libraries' own chatter at warnings."""
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    if log_file is not None:
        for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:  # one run's log at a time
            root.removeHandler(old)
            old.close()
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "datasets", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("sentence_transformers").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def close_progress_bars() -> None:
    """Close tqdm bars left open by an interrupted step, so the error starts on a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", [])):
        bar.close()


def run(main: Callable[[list[str] | None], int]) -> None:
    """Run a script's ``main``; user errors print as one line on stderr and exit with status 2."""
    try:
        code = main(None)
    except EmbedftError as exc:
        close_progress_bars()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
