"""What every command-line script shares: arguments, logging, and one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from embedft.config.parsing import load_config
from embedft.config.schema import RunConfig
from embedft.errors import ConfigError, EmbedftError

EXIT_USER_ERROR = 2


def add_config_arguments(parser: argparse.ArgumentParser, config_default: str | None) -> None:
    """``--config PATH`` and the overrides (:func:`add_overrides`)."""
    parser.add_argument("--config", default=config_default, help="YAML config file (default: %(default)s).")
    add_overrides(parser, "Override single config keys, e.g. num_epochs=1 mining.num_negatives=2.")


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """Trailing ``key=value`` overrides and ``--set-line`` (:func:`add_set_line`); :func:`parse_overrides` joins
    them."""
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)
    add_set_line(parser)


def parse_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, with the ``--set-line`` overrides after the others in ``overrides`` (the later of a
    key given in both is refused as given twice)."""
    args = parser.parse_args(argv)
    args.overrides += args.set_line
    return args


def add_set_line(parser: argparse.ArgumentParser) -> None:
    """``--set-line 'key=value ...'``: several overrides in one string, split as a shell splits words. The make
    targets hand SET over this way, untouched by the shell, so a quote in it is an error line, not a shell error."""
    parser.add_argument(
        "--set-line",
        type=split_overrides,
        default=[],
        metavar="'key=value ...'",
        help="Several overrides in one string, split as a shell splits words (make passes SET so).",
    )


def load_checked_config(path: str | None, overrides: list[str]) -> RunConfig:
    """:func:`~embedft.config.parsing.load_config`, then the trainer arguments given under ``training:`` checked by
    constructing them (:func:`~embedft.training.arguments.check_training_arguments`): a value or a combination the
    trainer refuses is one line before any model loads."""
    config = load_config(path, overrides)
    if config.training.trainer_arguments:
        # Imported only here: a config that passes trainer arguments pays for importing the trainer (seconds).
        from embedft.training.arguments import check_training_arguments

        check_training_arguments(config)
    return config


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


def close_progress_bars() -> None:
    """Close tqdm bars left open by an interrupted step, so the error starts on a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", [])):
        bar.close()


# Characters a terminal or str.splitlines() starts a new line at, written as escapes in an error line.
LINE_BREAKS = str.maketrans({char: ascii(char)[1:-1] for char in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(message: str) -> str:
    """``message`` on one line: a line break inside it (e.g. from a text of the user's data) written as its escape."""
    return message.translate(LINE_BREAKS)


def run(main: Callable[[list[str] | None], int]) -> None:
    """Run a script's ``main``; user errors print as one line on stderr and exit with status 2."""
    try:
        code = main(None)
    except EmbedftError as exc:
        close_progress_bars()
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as exc:
        close_progress_bars()
        # A run says where it stopped and how to resume it (RunInterrupted); before its folder exists nothing is kept.
        print(getattr(exc, "message", "interrupted: nothing was written"), file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
