"""What every command reports about itself: its log (INFO to stderr, and to a run's train.log) and its peak memory."""

from __future__ import annotations

import logging
import resource
import sys
import warnings
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleFormatter(logging.Formatter):
    """The console's log lines: embedft's own warnings as ``warning: ...``, the way errors read ``error: ...``; every
    other record (INFO progress, the libraries' messages) with its time, level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.WARNING and record.name.startswith("embedft"):
            return f"warning: {record.getMessage()}"
        return super().format(record)


def setup_logging(log_file: Path | None = None) -> None:
    """Log INFO to stderr (and to ``log_file``); keep the libraries' own chatter at warnings."""
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(ConsoleFormatter(LOG_FORMAT, datefmt="%H:%M:%S"))
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


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)
