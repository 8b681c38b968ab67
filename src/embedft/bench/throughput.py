"""The training step's throughput (``make bench-throughput``): embedft's training path beside the plain recipe.

The plain recipe is what a 60-line sentence-transformers script does: SentenceTransformerTrainer, MNRL, the
no-duplicates sampler, the same precision. embedft's path is its own trainer (:func:`embedft.training.trainer.
build_trainer`) with the run config's defaults. Both train the same randomly initialised model of a real shape on
the same synthetic triplets of mixed lengths, each in its own process (so peak memory is each path's own), and the
median step time, samples/s, real (unpadded) tokens/s, peak memory and model FLOP utilisation are compared.
No weights are needed: ``minilm`` and ``embeddinggemma-300m`` are built from their published configurations with
random weights, ``tiny`` is a two-layer model the tests run, ``packaged-minilm`` the shipped MiniLM.
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import sys
import time
from typing import Any

# Published architectures (config.json of all-MiniLM-L6-v2 and google/embeddinggemma-300m), built with random weights.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 512, "vocab_size": 30522},
    "minilm": {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
               "intermediate_size": 1536, "max_position_embeddings": 512, "vocab_size": 30522},
    "embeddinggemma-300m": {"model_type": "gemma3_text", "hidden_size": 768, "num_hidden_layers": 24,
                            "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 256,
                            "intermediate_size": 1152, "vocab_size": 262144, "max_position_embeddings": 2048,
                            "sliding_window": 512, "query_pre_attn_scalar": 256, "use_bidirectional_attention": True,
                            "rope_theta": 1_000_000.0, "hidden_activation": "gelu_pytorch_tanh"},
}  # fmt: skip
# embeddinggemma's sentence-transformers pipeline ends in two dense layers (768 -> 3072 -> 768) before normalising.
DENSE_HEAD = {"embeddinggemma-300m": (768, 3072)}
PACKAGED = "packaged-minilm"
# Peak dense bf16 FLOP/s of the GPUs the model FLOP utilisation is reported for.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def build_model(shape: str, device: str, max_seq_length: int) -> Any:
    """A SentenceTransformer of ``shape``: the packaged MiniLM, or the shape's transformer with random weights (seeded)
    and the packaged MiniLM's tokenizer (the shape's compute does not depend on which tokens are fed), mean pooling,
    embeddinggemma's dense head, and normalisation."""
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import AutoConfig, AutoModel

    from embedft.models.sources import packaged_model_path

    minilm = packaged_model_path("packaged:all-MiniLM-L6-v2")
    if shape == PACKAGED:
        model = SentenceTransformer(str(minilm), device=device)
        model.max_seq_length = max_seq_length
        return model
    torch.manual_seed(0)
    settings = dict(SHAPES[shape])
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    transformer = Transformer(str(minilm), max_seq_length=max_seq_length)
    transformer.model = AutoModel.from_config(config, attn_implementation="sdpa")  # keeps MiniLM's tokenizer
    modules = [transformer, Pooling(config.hidden_size, pooling_mode="mean")]
    if shape in DENSE_HEAD:
        width, inner = DENSE_HEAD[shape]
        modules += [Dense(width, inner, bias=False), Dense(inner, width, bias=False)]
    return SentenceTransformer(modules=[*modules, Normalize()], device=device)


def synthetic_triplets(tokenizer: Any, rows: int, seed: int, max_seq_length: int) -> Any:
    """``rows`` (query, answer, negative) triplets of mixed lengths, every text distinct: questions of 6-20 word
    pieces, documents of a log-normal length (median 60, cut at ``max_seq_length``), about 150 tokens a triplet."""
    from datasets import Dataset

    rng = random.Random(seed)
    words = [w for w in tokenizer.convert_ids_to_tokens(list(range(2000, 12000))) if w.isalpha()]

    def text(length: int, row: int) -> str:
        return f"{row} " + " ".join(rng.choice(words) for _ in range(length))

    def document_length() -> int:
        return min(max_seq_length - 3, max(8, int(rng.lognormvariate(4.1, 0.6))))

    return Dataset.from_dict(
        {
            "query": [text(rng.randint(6, 20), row) for row in range(rows)],
            "answer": [text(document_length(), row) for row in range(rows)],
            "negative": [text(document_length(), row) for row in range(rows)],
        }
    )


class StepClock:
    """A trainer callback: each optimizer step's seconds, and the real tokens the collator fed each step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                clock.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                clock.synchronize()
                clock.seconds.append(time.perf_counter() - clock.started)

        self.callback = Callback()
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.started = 0.0
        self.synchronize = lambda: None

    def counting(self, collator: Any) -> Any:
        """``collator``, counting the unpadded tokens of every batch it makes."""
        return CountingCollator(collator, self.tokens)


class CountingCollator:
    """A data collator that also counts the unpadded tokens of every batch (its attention masks); every other
    attribute is the wrapped collator's, which the trainer reads."""

    def __init__(self, collator: Any, tokens: list[int]) -> None:
        self.collator = collator
        self.tokens = tokens

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        self.tokens.append(int(sum(v.sum() for k, v in batch.items() if k.endswith("attention_mask"))))
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collator, name)


def measure(
    path: str, shape: str, device: str, batch_size: int, steps: int, warmup: int, precision: str, overrides=()
) -> dict:
    """Train ``warmup + steps`` steps on one path (``plain`` or ``project``, with config ``overrides``) and time the
    last ``steps``."""
    import tempfile

    import torch

    from embedft.training.length_chunks import chunk_rows, length_chunked

    max_seq_length = 128 if SHAPES.get(shape, {}).get("model_type", "bert") == "bert" else 256
    model = build_model(shape, device, max_seq_length)
    rows = synthetic_triplets(model.tokenizer, batch_size * (warmup + steps) + batch_size, 0, max_seq_length)
    with tempfile.TemporaryDirectory() as folder:
        if path == "plain":
            trainer, chunks = plain_trainer(model, rows, folder, device, batch_size, warmup + steps, precision), None
        else:
            trainer, config = project_trainer(
                model, rows, folder, device, batch_size, warmup + steps, precision, overrides
            )
            chunks = chunk_rows(config.training.length_chunks, device)
        clock = StepClock()
        if device.startswith("cuda"):
            clock.synchronize = torch.cuda.synchronize
            torch.cuda.reset_peak_memory_stats()
        trainer.data_collator = clock.counting(trainer.data_collator)
        trainer.add_callback(clock.callback)
        with length_chunked(model, chunks):  # as train_model trains
            trainer.train()
    timed, tokens = clock.seconds[warmup:], clock.tokens[warmup : warmup + steps]
    median = statistics.median(timed)
    parameters = sum(
        p.numel()
        for name, p in model.named_parameters()
        if "embed_tokens" not in name and "word_embeddings" not in name
    )
    flops = 6 * parameters * sum(tokens) / sum(timed)  # forward + backward, attention left out
    peak = PEAK_BF16_FLOPS.get(next((n for n in PEAK_BF16_FLOPS if n in device_name(device)), ""), None)
    return {
        "samples_per_second": batch_size * len(timed) / sum(timed),
        "tokens_per_second": sum(tokens) / sum(timed),
        "median_step_seconds": median,
        "peak_memory_gib": peak_memory_gib(device),
        "model_tflops": flops / 1e12,
        "mfu": flops / peak if peak and precision == "bf16" else None,
        "steps": len(timed),
        "tokens_per_step": sum(tokens) / max(len(tokens), 1),
    }


def plain_trainer(model, rows, folder, device, batch_size, steps, precision):
    """The plain recipe: SentenceTransformerTrainer with MNRL and the no-duplicates sampler."""
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    args = SentenceTransformerTrainingArguments(
        output_dir=folder, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=3e-5,
        warmup_steps=0.1, bf16=precision == "bf16", batch_sampler=BatchSamplers.NO_DUPLICATES, report_to=[],
        save_strategy="no", logging_steps=max(steps, 1), use_cpu=device == "cpu", seed=12,
    )  # fmt: skip
    loss = MultipleNegativesRankingLoss(model)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=rows, loss=loss)


def project_config(batch_size: int, steps: int, precision: str, overrides=()) -> Any:
    """The run config embedft's path trains with: the defaults (what ``make train-embed`` trains with), the bench's
    fixed keys, and ``overrides`` (``key=value``, to measure one lever).

    Raises:
        ConfigError: an override is not a valid key or value, or sets one of the bench's own keys.
    """
    from embedft.config.parsing import load_config

    return load_config(
        None,
        [
            f"batch_size={batch_size}",
            "seed=12",
            f"training.bf16={str(precision == 'bf16').lower()}",
            f"training.max_steps={steps}",
            "training.report_to=[]",
            "training.eval_steps=null",
            "training.save_steps=1000000",
            f"training.logging_steps={steps}",
            *overrides,
        ],
    )


def project_trainer(model, rows, folder, device, batch_size, steps, precision, overrides=()):
    """embedft's trainer on :func:`project_config`."""
    from embedft.training.trainer import build_trainer

    config = project_config(batch_size, steps, precision, overrides)
    return build_trainer(model, rows, None, None, config, folder, device), config


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory the process allocated on CUDA, else its peak resident memory."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def compare(
    shape: str, device: str, batch_size: int, steps: int, warmup: int, precision: str, overrides=()
) -> dict[str, Any]:
    """Both paths, each in a process of its own, and the project's speed-up over the plain recipe; ``overrides``
    change the project's config (``key=value``)."""
    import subprocess

    project_config(batch_size, warmup + steps, precision, overrides)  # a bad override stops before any timing
    results = {}
    for path in ("plain", "project"):
        arguments = [path, shape, device, str(batch_size), str(steps), str(warmup), precision, *overrides]
        done = subprocess.run(
            [sys.executable, "-m", "embedft.bench.throughput", *arguments], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {path} measurement failed:\n{done.stderr[-3000:]}")
        results[path] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "device": device_name(device),
        "shape": shape,
        "batch_size": batch_size,
        "precision": precision,
        "project_overrides": list(overrides),
        **results,
        "speedup": results["project"]["tokens_per_second"] / results["plain"]["tokens_per_second"],
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table, one row a path."""
    lines = [
        f"{result['shape']} on {result['device']}, batch {result['batch_size']}, {result['precision']}: "
        f"embedft {result['speedup']:.2f}x the plain recipe's tokens/s",
        "",
        "| path | samples/s | tokens/s | median step (s) | peak memory (GiB) | model TFLOP/s | MFU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in ("plain", "project"):
        r = result[path]
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        speed = f"{r['samples_per_second']:.1f} | {r['tokens_per_second']:.0f} | {r['median_step_seconds']:.3f}"
        lines.append(f"| {path} | {speed} | {r['peak_memory_gib']:.2f} | {r['model_tflops']:.3f} | {mfu} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # one path's measurement, in a process of its own (compare)
    path, shape, device, batch, steps, warmup, precision, *overrides = sys.argv[1:]
    print(json.dumps(measure(path, shape, device, int(batch), int(steps), int(warmup), precision, overrides)))
