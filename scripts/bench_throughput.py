#!/usr/bin/env python
"""The training step's throughput: embedft's training path beside the plain recipe (make bench-throughput).

Both paths train the same randomly initialised model of a real shape on the same synthetic triplets, each in its own
process; OUT/results.json and OUT/results.md get samples/s, tokens/s, the median step, peak memory and MFU of both,
and the speed-up. Shapes: tiny (the tests), minilm, embeddinggemma-300m, packaged-minilm (the shipped weights).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedft.cli import common
from embedft.errors import ConfigError, OutputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from embedft.bench.throughput import PACKAGED, SHAPES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="minilm", choices=[*SHAPES, PACKAGED], help="Model shape (%(default)s).")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one).")
    parser.add_argument("--batch-size", type=int, default=32, help="Triplets a step (default: %(default)s).")
    parser.add_argument("--steps", type=int, default=20, help="Timed steps (default: %(default)s).")
    parser.add_argument("--warmup", type=int, default=3, help="Steps before the timing starts (%(default)s).")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="(%(default)s)")
    parser.add_argument("--output-dir", required=True, help="Folder for results.json and results.md.")
    common.add_overrides(parser, "Config overrides of embedft's path.")
    return common.parse_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    from embedft.bench.throughput import compare, markdown
    from embedft.io import write_json, write_text
    from embedft.models.devices import encoding_precision, resolve_device

    args = parse_args(argv)
    if args.batch_size < 2 or args.steps < 1 or args.warmup < 0:
        raise ConfigError("--batch-size must be at least 2, --steps at least 1 and --warmup 0 or more")
    output = Path(args.output_dir)
    if (output / "results.json").exists():
        raise OutputError(f"{output} already holds results.json: give another OUT")
    device = resolve_device(args.device, "--device", for_training=False)
    precision = encoding_precision(args.precision, device)  # bf16 where the device has it natively, like training
    result = compare(args.shape, device, args.batch_size, args.steps, args.warmup, precision, args.overrides)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "results.json", result)
    write_text(output / "results.md", markdown(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    common.run(main)
