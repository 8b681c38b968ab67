"""Start a script on several processes through torchrun: ``make train-embed NPROC=N`` (``NNODES``, ``NODE_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` for several machines).

torchrun (``torch.distributed.run``) starts, watches and stops the processes; this module only checks what would
make it fail obscurely (a port already taken, a wrong node rank) and turns its failures into one line: which rank
failed, how, and where its own message is. When one process dies, torchrun stops the others, so nothing hangs.

Usage:
    python -m embedft.cli.torchrun --nproc 2 -- scripts/train_embed.py --config configs/run_embedding_mnrl.yaml

"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from embedft.cli import common
from embedft.errors import ConfigError, EmbedftError, TrainingError, first_line

DEFAULT_MASTER_PORT = 29500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The process layout, then the script every process runs and its own arguments (after ``--``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=1, help="Processes per machine (one per GPU).")
    parser.add_argument("--nnodes", type=int, default=1, help="Machines.")
    parser.add_argument("--node-rank", type=int, default=0, help="This machine's rank, 0 to nnodes - 1.")
    parser.add_argument("--master-addr", default=None, help="Address of the machine with node rank 0.")
    parser.add_argument("--master-port", type=int, default=None, help="A free port on that machine.")
    parser.add_argument("script", help="The script every process runs.")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="Its arguments.")
    return parser.parse_args(argv)


def check_layout(nproc: int, nnodes: int, node_rank: int, master_addr: str | None) -> None:
    """Refuse a process layout torchrun could not start.

    Raises:
        ConfigError: a count below 1, a node rank outside the machines, or several machines without an address.
    """
    for name, value in (("NPROC", nproc), ("NNODES", nnodes)):
        if value < 1:
            raise ConfigError(f"{name} must be 1 or more, got {value}")
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"NODE_RANK must lie in 0..{nnodes - 1} for NNODES={nnodes}, got {node_rank}")
    if nnodes > 1 and not master_addr:
        raise ConfigError(
            "several machines need MASTER_ADDR, the address of the machine with NODE_RANK=0 (and the same MASTER_PORT "
            "on every machine)"
        )


def check_port_free(port: int) -> None:
    """Refuse a rendezvous port that another program (or an earlier run) already holds on this machine, the one
    with node rank 0 (torchrun's store listens there on every interface). Other bind errors are left to torchrun.

    Raises:
        ConfigError: the port is taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return
            raise ConfigError(
                f"MASTER_PORT {port} is already in use on this machine: pick a free one (e.g. MASTER_PORT={port + 1}),"
                " or leave MASTER_PORT unset on a single machine and torchrun finds one"
            ) from None


def torchrun_arguments(
    nproc: int, nnodes: int, node_rank: int, master_addr: str | None, master_port: int | None
) -> list[str]:
    """torchrun's options for this layout. One machine without a port: a private rendezvous on a free port
    (``--standalone``); otherwise the static rendezvous at ``master_addr:master_port``."""
    arguments = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes), "--max-restarts", "0"]
    if nnodes == 1 and master_port is None:
        return [*arguments, "--standalone"]
    return [
        *arguments,
        "--node-rank",
        str(node_rank),
        "--master-addr",
        master_addr or "127.0.0.1",
        "--master-port",
        str(master_port or DEFAULT_MASTER_PORT),
    ]


def failure_message(error: Exception) -> str:
    """One line for torchrun's ChildFailedError: the first rank that failed, and how."""
    rank, failure = error.get_first_failure()
    how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
    others = len(error.failures) - 1
    also = f" ({others} other rank(s) failed too)" if others else ""
    return f"training process rank {rank} {how}{also}; its own message is above, the other ranks were stopped"


def launch(args: argparse.Namespace) -> int:
    """Run ``args.script`` on every process through torchrun; return the exit status for the shell.

    Raises:
        ConfigError: a layout or port that cannot work.
        TrainingError: torchrun is missing, or a process failed (its status decides ours).
    """
    check_layout(args.nproc, args.nnodes, args.node_rank, args.master_addr)
    if args.master_port is not None and args.node_rank == 0:
        check_port_free(args.master_port)
    try:
        import torch.distributed as dist
        from torch.distributed import run as torchrun
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    except ImportError as exc:
        raise TrainingError(f"torchrun is not available ({first_line(exc)}): install torch, or use NPROC=1") from None
    if not dist.is_available():
        raise TrainingError("this torch build has no torch.distributed: train with one process (NPROC=1)")
    options = torchrun_arguments(args.nproc, args.nnodes, args.node_rank, args.master_addr, args.master_port)
    script_args = args.script_args[1:] if args.script_args[:1] == ["--"] else args.script_args
    try:
        torchrun.run(torchrun.parse_args([*options, args.script, *script_args]))
    except ChildFailedError as exc:
        print(f"error: {failure_message(exc)}", file=sys.stderr)
        codes = {failure.exitcode for failure in exc.failures.values()}
        return common.EXIT_USER_ERROR if common.EXIT_USER_ERROR in codes else 1
    except EmbedftError:
        raise
    except Exception as exc:  # e.g. the rendezvous cannot reach MASTER_ADDR
        raise TrainingError(f"torchrun could not start the processes: {first_line(exc)}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    return launch(parse_args(argv))


if __name__ == "__main__":
    common.run(main)
