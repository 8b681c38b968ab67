"""Run ``scripts/train_embed.py`` in one torchrun process and record what that process did, for
tests/training/test_distributed.py.

It writes ``$PROBE_DIR/rank<R>.json``: the shape of every similarity matrix the training loss built (queries of this
process x candidates) and the result files this process wrote. With ``PROBE_KILL_RANK=R``, rank R dies in training step
``PROBE_KILL_STEP`` (default 1), as a process killed by the machine would.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import torch

from embedft.run import stages
from embedft.training import distributed, trainer

record: dict[str, list] = {"similarity_shapes": [], "wrote": []}
probe_file = Path(os.environ["PROBE_DIR"]) / f"rank{distributed.rank()}.json"
kill_step = int(os.environ.get("PROBE_KILL_STEP", "1"))


def save_record() -> None:
    probe_file.write_text(json.dumps(record), encoding="utf-8")


def recording(name: str, function):
    def wrapper(*args, **kwargs):
        record["wrote"].append(name)
        save_record()
        return function(*args, **kwargs)

    return wrapper


build_loss = trainer.build_loss


def probed_loss(*args, **kwargs):
    loss = build_loss(*args, **kwargs)
    similarity = loss.similarity_fct

    def recorded_similarity(a, b):
        if not torch.is_grad_enabled():  # the evaluation loss, not a training step
            return similarity(a, b)
        step = len(record["similarity_shapes"]) + 1
        if str(distributed.rank()) == os.environ.get("PROBE_KILL_RANK") and step == kill_step:
            os._exit(3)
        scores = similarity(a, b)
        record["similarity_shapes"].append(list(scores.shape))
        save_record()
        return scores

    loss.similarity_fct = recorded_similarity
    return loss


# Each where the stages call it: the loss where the trainer builds it, the files where the run stages write them.
trainer.build_loss = probed_loss
stages.save_model_atomically = recording("final model", stages.save_model_atomically)
stages.write_json = recording("json", stages.write_json)
stages.write_report = recording("report", stages.write_report)
stages.point_latest = recording("latest", stages.point_latest)
stages.mark_complete = recording("complete", stages.mark_complete)
save_record()

sys.argv = [str(Path(__file__).resolve().parents[2] / "scripts" / "train_embed.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
