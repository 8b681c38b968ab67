"""What a run leaves for people to read: ``metrics.json`` and the closing summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_metrics(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def metric_changes(baseline: dict[str, float], final: dict[str, float]) -> list[tuple[str, float, float]]:
    """``(name, baseline, final)`` for every metric both evaluations report, in the baseline's order."""
    return [(name, baseline[name], final[name]) for name in baseline if name in final]


def format_summary(metrics: dict[str, Any], run_dir: Path) -> str:
    """The lines printed when a run ends: baseline -> final for each metric and where everything is."""
    lines = ["", f"Run finished: {run_dir}"]
    for name, before, after in metric_changes(metrics["baseline"], metrics["final"]):
        lines.append(f"  {name:<18} baseline {before:.4f} -> final {after:.4f} ({after - before:+.4f})")
    timings = metrics.get("timings", {})
    if "total_seconds" in timings:
        lines.append(f"  wall time          {timings['total_seconds']:.0f} s")
    lines += [
        f"  final model        {run_dir / 'final'}",
        f"  metrics            {run_dir / 'metrics.json'}",
        f"  resolved config    {run_dir / 'config.yaml'}",
        f"  checkpoints        {run_dir / 'checkpoints'}",
    ]
    if (run_dir / "tensorboard").is_dir():
        lines.append(f"  TensorBoard events {run_dir / 'tensorboard'}")
    return "\n".join(lines)
