"""The ``embedft`` command: ``embedft train|eval|infer|report ...``, installed with the package.

Each sub-command is the same function the make targets run through ``scripts/*.py`` (``make train-embed`` is
``embedft train``, ``make eval-embed`` is ``embedft eval``, ``make infer-embed`` is ``embedft infer``, ``make report``
is ``embedft report``), with the same arguments. Heavy libraries are imported inside the commands, so ``--help`` and
config errors answer at once.

Example::

    embedft train --config configs/run_embedding_mnrl.yaml num_epochs=1
    embedft eval --model outputs/latest
    embedft infer "How long does a building permit take?" --top-k 3
    embedft report outputs/latest

"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from embedft.cli import common
from embedft.errors import DataError, OutputError
from embedft.hub import use_offline_mode
from embedft.inference import read_texts
from embedft.io import read_json, write_json
from embedft.logs import setup_logging
from embedft.run.files import RunFiles, resolve_model_and_config, run_config
from embedft.run.report import format_summary, write_report

logger = logging.getLogger(__name__)


TRAIN_DESCRIPTION = """\
Fine-tune an embedding model: data -> split -> hard-negative mining -> baseline eval -> MNRL training -> final eval.

An interrupted run (crash, SIGKILL, power loss) resumes from its last checkpoint with the same split, the same
mined negatives (cached in the run folder) and the optimizer state, and ends at the same total step count.

Examples:
    embedft train --config configs/run_embedding_mnrl.yaml [key=value ...]
    embedft train --resume outputs/<run>|latest     # continue an interrupted run
    embedft train --resume latest batch_size=16 training.gradient_accumulation_steps=2
"""


EVAL_DESCRIPTION = """\
Evaluate a saved model on the configured evaluation split: triplet accuracy and retrieval metrics.

By default it scores the latest run's final model with that run's own config and evaluation triplets, so the
numbers match the run's metrics.json. MODEL may be a run folder, a model folder (e.g. the untouched base model),
or a packaged or hub name; a model from no run is scored with the latest run's config (the same split), and the
evaluation triplets are mined again from that config's data.

Example:
    embedft eval [--model PATH] [--config CONFIG] [--output FILE] [key=value ...]
"""


INFER_DESCRIPTION = """\
Retrieve the top-k answers for query texts with a saved model.

Texts come from arguments, a file (--file, one per line) or standard input. The corpus is the run's retrieval
pool (every answer of the configured data, plus its corpus_file), or --corpus: a .jsonl with a 'text' per row or a
text file with one document per line. The model defaults to the latest run's final model, loaded with the run's
max_seq_length and query/document prompts. A run's final model reads the pool's embeddings that its final evaluation
kept in the run folder (embeddings/), so a call encodes only the query; other documents are encoded once and added.

Examples:
    embedft infer "how long does a building permit take?" [--top-k 5] [--model PATH]
    echo "question" | embedft infer
"""


EXPORT_DESCRIPTION = """\
Write a model's embeddings of a corpus as a faiss index, for serving without embedft.

The model defaults to the latest run's final model, the corpus to that run's retrieval pool (its final evaluation
kept the pool's embeddings, so nothing is encoded again). The folder (default: <run>/index) gets index.faiss (exact
inner product on unit vectors: the model's cosine), documents.jsonl (line i is row i: {"id", "text"}) and
index.json; an existing folder is never overwritten. The README shows how to query it with faiss and
sentence-transformers alone.

Example:
    embedft export-index [--model PATH] [--corpus FILE] [--output DIR]
"""


REPORT_DESCRIPTION = """\
Rebuild a run's report.md and PNG plots from its metrics.json (and similarities.json).

Example:
    embedft report [RUN_DIR]        # default: outputs/latest
"""


def new_parser(prog: str | None, description: str) -> argparse.ArgumentParser:
    """A sub-command's parser; ``prog`` names it in usage lines (None: the running script's name)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def train_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``embedft train`` / ``scripts/train_embed.py``: ``--config``, ``--resume`` and ``key=value`` overrides."""
    parser = new_parser(prog, TRAIN_DESCRIPTION)
    common.add_config_arguments(parser, config_default="configs/run_embedding_mnrl.yaml")
    parser.add_argument(
        "--resume", default=None, metavar="RUN", help="Resume an interrupted run: its folder, or 'latest'."
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Load, clean and split the data, print the first pairs and the split sizes, and stop (no model loads, "
        "nothing is written): a check of the column mapping before a long run.",
    )
    return parser


def train_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the whole training job (:func:`embedft.run.pipeline.train_embed`) and print its summary."""
    args = common.parse_overrides(train_parser(prog), argv)
    config = common.load_checked_config(args.config, args.overrides)
    use_offline_mode(run_config(config, args.resume).source_names)
    # Imported after use_offline_mode, on purpose: the Hugging Face libraries read HF_HUB_OFFLINE once, when imported.
    from embedft.run.pipeline import train_embed
    from embedft.run.preview import preview_data

    if args.dry_run:
        print(preview_data(config), flush=True)
        return 0
    setup_logging()
    # A resumed run keeps its own config but for what it can safely change (batch_size with
    # training.gradient_accumulation_steps, how often it evaluates, saves and logs, its loggers): anything else is
    # refused, with the reason, before anything loads; the changes are saved in the run's config.yaml.
    finished = train_embed(config, resume=args.resume, resume_overrides=args.overrides if args.resume else ())
    if finished is not None:  # None: a torchrun process other than rank 0, which reports nothing
        run_dir, metrics = finished
        print(format_summary(metrics, run_dir), flush=True)
    return 0


def eval_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``embedft eval`` / ``scripts/eval_embed.py``: ``--model``, ``--output``, ``--config`` and overrides."""
    parser = new_parser(prog, EVAL_DESCRIPTION)
    parser.add_argument("--model", default=None, help="Model or run folder (default: the latest run's final model).")
    parser.add_argument("--output", default=None, help="Also write the metrics to this JSON file (never overwritten).")
    common.add_config_arguments(parser, config_default=None)
    return parser


def eval_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Score a model on the configured test questions and print (and with ``--output`` write) the metrics."""
    args = common.parse_overrides(eval_parser(prog), argv)

    setup_logging()
    model_path, run_dir, config = resolve_model_and_config(args.model, args.config, args.overrides)
    use_offline_mode([*config.source_names, model_path])
    if args.output is not None and Path(args.output).exists():
        raise OutputError(f"{args.output} already exists and is never overwritten: choose another --output")
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise OutputError(f"the folder of --output {args.output} does not exist: create it or choose another path")

    # Imported after use_offline_mode, on purpose: the Hugging Face libraries read HF_HUB_OFFLINE once, when imported.
    from embedft.run.scoring import score_saved_model

    metrics, eval_triplets = score_saved_model(config, model_path, run_dir)
    result = {"model": model_path, "eval_triplets": eval_triplets, "metrics": metrics}
    if args.output is not None:
        write_json(Path(args.output), result)
    print(f"\nModel: {model_path}")
    for name, value in metrics.items():
        print(f"  {name:<18} {value:.4f}")
    return 0


def infer_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``embedft infer`` / ``scripts/infer_embed.py``: query texts, ``--file``, ``--model``, ``--corpus``, ..."""
    parser = new_parser(prog, INFER_DESCRIPTION)
    parser.add_argument("texts", nargs="*", help="Query texts.")
    parser.add_argument("--file", default=None, help="File with one query per line.")
    parser.add_argument("--model", default=None, help="Model or run folder (default: the latest run's final model).")
    parser.add_argument(
        "--corpus", default=None, help=".jsonl with 'text' rows, or a text file with one document per line."
    )
    parser.add_argument("--top-k", type=int, default=5, help="Answers shown per query (default: %(default)s).")
    parser.add_argument("--json", action="store_true", help="Print JSON lines instead of a readable list.")
    parser.add_argument("--config", default=None, help="Config whose data set gives the corpus (default: the run's).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="key=value")
    common.add_set_line(parser)
    return parser


def infer_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Print the ``--top-k`` best documents of the corpus for each query text."""
    args = common.parse_overrides(infer_parser(prog), argv)

    stdin_text = None if sys.stdin is None or sys.stdin.isatty() or args.texts or args.file else sys.stdin.read()
    queries = read_texts(args.texts, args.file, stdin_text)
    if not queries:
        raise DataError('no query texts: pass them as arguments, TEXT="...", FILE=path, or on standard input')
    if args.top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {args.top_k}")
    setup_logging()
    model_path, run_dir, config = resolve_model_and_config(args.model, args.config, args.overrides)
    use_offline_mode([*config.source_names, model_path])
    # Imported after use_offline_mode, on purpose: the Hugging Face libraries read HF_HUB_OFFLINE once, when imported.
    from embedft.inference import retrieve

    results = retrieve(config, model_path, run_dir, queries, args.corpus, args.top_k)
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [{"score": h.score, "text": h.text} for h in hits]}))
            continue
        print(f"\nQuery: {query}")
        for rank, hit in enumerate(hits, start=1):
            text = " ".join(hit.text.split())
            print(f"  {rank}. {hit.score:.4f}  {text[:200]}{'...' if len(text) > 200 else ''}")
    return 0


def export_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``embedft export-index`` / ``scripts/export_index.py``: ``--model``, ``--corpus``, ``--output``."""
    parser = new_parser(prog, EXPORT_DESCRIPTION)
    parser.add_argument("--model", default=None, help="Model or run folder (default: the latest run's final model).")
    parser.add_argument("--corpus", default=None, help="Documents to index (default: the run's retrieval pool).")
    parser.add_argument("--output", default=None, help="Folder to write (default: <run>/index).")
    common.add_config_arguments(parser, config_default=None)
    return parser


def export_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Index the corpus with the model (:func:`embedft.export.export_index`) and say where the files are."""
    args = common.parse_overrides(export_parser(prog), argv)
    model_path, run_dir, config = resolve_model_and_config(args.model, args.config, args.overrides)
    if args.output is None and run_dir is None:
        raise OutputError(f"{model_path} is not a run's model: give --output for the index folder")
    output = Path(args.output) if args.output is not None else RunFiles(run_dir).index
    use_offline_mode([model_path, *config.source_names])
    setup_logging()
    # Imported after use_offline_mode, on purpose: the Hugging Face libraries read HF_HUB_OFFLINE once, when imported.
    from embedft.export import export_index

    count = export_index(config, model_path, run_dir, args.corpus, output)
    print(f"Indexed {count} documents: {output} (index.faiss, documents.jsonl, index.json)")
    return 0


def report_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``embedft report`` / ``scripts/report.py``: the run folder."""
    parser = new_parser(prog, REPORT_DESCRIPTION)
    parser.add_argument("run_dir", nargs="?", default="outputs/latest", help="Run folder (default: %(default)s).")
    return parser


def report_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Rebuild ``report.md`` and its plots from a finished run's ``metrics.json``."""
    args = report_parser(prog).parse_args(argv)

    files = RunFiles(Path(args.run_dir).resolve())
    if not files.metrics.is_file():
        raise OutputError(f"{args.run_dir} has no metrics.json: pass a finished run folder, e.g. RUN=outputs/latest")
    similarities = read_json(files.similarities) if files.similarities.is_file() else None
    report = write_report(files.run_dir, read_json(files.metrics), similarities)
    print(f"Report: {report}")
    return 0


# Each sub-command: its function and the one line ``embedft --help`` shows.
COMMANDS: dict[str, tuple[Callable[[list[str] | None, str | None], int], str]] = {
    "train": (train_main, "fine-tune a model: mine, train, score before and after (make train-embed)"),
    "eval": (eval_main, "score a model on the run's test questions (make eval-embed)"),
    "infer": (infer_main, "top-k answers for query texts (make infer-embed)"),
    "report": (report_main, "rebuild a run's report.md and plots (make report)"),
    "export-index": (export_main, "a faiss index of a corpus for serving (make export-index)"),
}


def main(argv: list[str] | None = None) -> int:
    """``embedft COMMAND [ARGS]``: run the sub-command with the remaining arguments (``embedft COMMAND --help``
    lists them); ``embedft --help`` lists the commands."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        command, _ = COMMANDS[argv[0]]
        return command(argv[1:], f"embedft {argv[0]}")
    listing = "\n".join(f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="embedft",
        description="Fine-tune a text-embedding model on (question, answer) pairs, score it and search with it.",
        epilog=f"commands:\n{listing}\n\n'embedft COMMAND --help' shows a command's arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), help=", ".join(COMMANDS))
    parser.parse_args(argv[:1])  # no or an unknown command: the usage and an error (exit 2); --help: the help
    return 0  # not reached: parse_args exits


def run() -> None:
    """The console entry point (``[project.scripts] embedft``): :func:`main` with one-line errors, exit status 2."""
    common.run(main)
