"""What a run leaves for people to read: the closing summary, ``report.md`` and its PNG plots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedft.errors import OutputError
from embedft.evaluation.headroom import headroom_warnings
from embedft.io import read_json, write_text
from embedft.run.files import PLOT_FILES, RunFiles
from embedft.run.report_choices import choice_section, questions_section

logger = logging.getLogger(__name__)


def metric_changes(baseline: dict[str, float], final: dict[str, float]) -> list[tuple[str, float, float]]:
    """``(name, baseline, final)`` for every metric both evaluations report, in the baseline's order."""
    return [(name, baseline[name], final[name]) for name in baseline if name in final]


def comparison_table(baseline: dict[str, float], final: dict[str, float]) -> list[str]:
    """The Markdown table of every metric both evaluations report: baseline, final and the change (the report's and
    the model card's)."""
    lines = ["| metric | baseline | final | change |", "| --- | --- | --- | --- |"]
    for name, before, after in metric_changes(baseline, final):
        lines.append(f"| {name} | {before:.4f} | {after:.4f} | {after - before:+.4f} |")
    return lines


def format_summary(metrics: dict[str, Any], run_dir: Path) -> str:
    """The lines printed when a run ends: baseline -> final for each metric and where everything is."""
    files = RunFiles(run_dir)
    lines = ["", f"Run finished: {run_dir}"]
    for name, before, after in metric_changes(metrics["baseline"], metrics["final"]):
        lines.append(f"  {name:<18} baseline {before:.4f} -> final {after:.4f} ({after - before:+.4f})")
    groups = answer_groups_note(metrics)
    if groups:
        lines.append(f"  ({groups})")
    if "triplet_accuracy" in metrics["baseline"]:
        lines.append(f"  (triplet_accuracy: {TRIPLET_NOTE})")
    data = metrics.get("data", {})
    if "eval_answers" in data:
        lines.append(
            f"  test set           {data.get('eval_questions', '?')} questions, {data['eval_answers']} distinct right "
            f"answers, ranking {data.get('retrieval_pool', '?')} documents"
        )
    lines += [f"  warning: {warning}" for warning in headroom_warnings(metrics)]
    timings = metrics.get("timings", {})
    if "total_seconds" in timings:
        lines.append(f"  wall time          {timings['total_seconds']:.0f} s")
    lines += [
        f"  final model        {files.final_model}",
        f"  metrics            {files.metrics}",
        f"  resolved config    {files.config}",
        f"  checkpoints        {files.checkpoints}",
    ]
    if files.report.is_file():
        lines.append(f"  report (+ plots)   {files.report}")
    if files.tensorboard.is_dir():
        lines.append(f"  TensorBoard events {files.tensorboard}")
    return "\n".join(lines)


def answer_groups_note(metrics: dict[str, Any]) -> str | None:
    """What the test questions' two groups are and how many each holds, in words (None when not recorded)."""
    whole = metrics.get("evaluation", {}).get("baseline_and_final")
    if not isinstance(whole, dict) or "questions_seen_answers" not in whole:
        return None
    seen, unseen = whole["questions_seen_answers"], whole["questions_unseen_answers"]
    if seen and unseen:
        return (
            f"seen_answers: {seen} test questions whose right answer was trained on with another question; "
            f"unseen_answers: {unseen} whose answer never was"
        )
    if seen:
        return f"all {seen} test questions have a right answer that was trained on with another question"
    return f"all {unseen} test questions have answers that were never trained on"


TRIPLET_NOTE = (
    "each answer against the wrong answer the mining model ranked highest before training; "
    "biased toward a large gain, read ndcg@10 / mrr@10 / accuracy@1 first"
)


def write_report(run_dir: Path, metrics: dict[str, Any], similarities: dict[str, Any] | None) -> Path:
    """Write ``report.md`` and its PNG plots into ``run_dir``; return the report's path.

    Args:
        run_dir: the run folder (holds metrics.json, and mining.json when the run recorded its mining).
        metrics: the contents of metrics.json.
        similarities: ``{"baseline": {"positive": [...], "negative": [...]}, "final": {...}}`` or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    files = RunFiles(run_dir)
    plots = {
        "loss": plot_loss(metrics["history"], files.plot("loss")),
        "eval_metrics": plot_eval_metrics(metrics, files.plot("eval_metrics")),
        "baseline_vs_final": plot_baseline_vs_final(metrics, files.plot("baseline_vs_final")),
        "similarities": similarities is not None and plot_similarities(similarities, files.plot("similarities")),
    }
    mining = read_mining(files.mining)
    # Drawn from the run's mining.json, when it has one.
    mining_plot = PLOT_FILES["mining"] if mining is not None and plot_mining(mining, files.plot("mining")) else None
    changes = read_json(files.questions) if files.questions.is_file() else None
    made = {k: PLOT_FILES[k] for k, made in plots.items() if made}
    text = report_markdown(metrics, made, mining, mining_plot, changes)
    write_text(files.report, text)
    return files.report


def report_markdown(
    metrics: dict[str, Any],
    plots: dict[str, str],
    mining: dict[str, Any] | None = None,
    mining_plot: str | None = None,
    changes: dict[str, Any] | None = None,
) -> str:
    """The Markdown report: a baseline/final table, the questions that got better or worse (``changes``, from
    ``questions.json``), how the final model was chosen, data, mining (when recorded) and timings, and the plots."""
    lines = ["# Fine-tuning report", "", *comparison_table(metrics["baseline"], metrics["final"])]
    lines += ["", *protocol_notes(metrics)]
    lines += [f"- **Warning:** {warning}" for warning in headroom_warnings(metrics)]
    for section in (questions_section(changes), choice_section(metrics)):
        lines += ["", *section] if section else []
    lines += ["", "## Data", ""]
    lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in metrics.get("data", {}).items()]
    if mining is not None:
        lines += ["", *mining_section(mining, mining_plot)]
    training = metrics.get("training", {})
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in training.items()]
    timings = metrics.get("timings", {})
    if timings:
        lines += ["", "## Timings", ""]
        lines += [timing_line(key, value) for key, value in timings.items()]
    captions = {
        "loss": "Training and evaluation loss",
        "eval_metrics": "Evaluation metrics over training",
        "baseline_vs_final": "Baseline vs final",
        "similarities": "Query-positive and query-negative similarity, before and after training",
    }
    for key, file in plots.items():
        lines += ["", f"## {captions[key]}", "", f"![{captions[key]}]({file})"]
    return "\n".join(lines) + "\n"


def timing_line(key: str, value: float) -> str:
    """One line of the report's timings: seconds, or GiB for the memory recorded with them."""
    if "_gib" in key:
        return f"- {key.replace('_', ' ')}: {value:.2f} GiB"
    return f"- {key.replace('_seconds', '').replace('_', ' ')}: {value:.1f} s"


def protocol_notes(metrics: dict[str, Any]) -> list[str]:
    """What each number was measured on, in words, for the report: the questions and documents of baseline and
    final, and those of the scores during training, with their bounded pool when it was bounded."""
    protocol = metrics.get("evaluation", {})
    data = metrics.get("data", {})
    # metrics.json written before the pools were recorded holds only the split names ("test", "dev").
    whole = protocol.get("baseline_and_final")
    whole = whole if isinstance(whole, dict) else {"split": "test"}
    steps = protocol.get("during_training")
    steps = steps if isinstance(steps, dict) else {"split": steps or "test"}
    questions = whole.get("questions", data.get("eval_questions", "?"))
    documents = whole.get("documents") or data.get("retrieval_pool", "?")
    ranking = f", each ranking all {documents} documents" if "ndcg@10" in metrics["baseline"] else ""
    if whole.get("pool") == "bounded":
        total = data.get("retrieval_pool", "?")
        ranking = (
            f", each ranking a bounded pool of {documents} of the {total} documents (`evaluation.final_pool: "
            "bounded`: every positive, their mined hard negatives and a seeded sample); these read higher than a "
            "whole-pool score would"
        )
    notes = [
        f"Baseline and final: {questions} held-out test questions{ranking}; the final model "
        "is scored after reloading it from `final/`, under the same conditions as the baseline.",
    ]
    scored_steps = any("ndcg@10" in e or "triplet_accuracy" in e for e in metrics.get("history", []))
    if scored_steps:
        kind = steps["split"]
        available = data.get("dev_questions", "?") if kind == "dev" else questions
        step_questions = steps.get("questions", available)
        if isinstance(step_questions, int) and isinstance(available, int) and step_questions < available:
            who = f"a seeded sample of {step_questions} of the {available} {kind} questions (`evaluation.max_queries`)"
        else:
            who = f"{step_questions} {kind} questions"
        pool = ""
        step_documents = steps.get("documents")
        if isinstance(step_documents, int) and isinstance(documents, int) and step_documents < documents:
            pool = (
                f", each ranking a bounded pool of {step_documents} of the {documents} documents (every positive, "
                "their mined hard negatives and a seeded sample: `evaluation.max_pool`); step values usually read "
                "higher than the whole pool's: never compare them with baseline and final"
            )
        if kind == "dev":
            notes.append(f"Scores during training use {who} held out of training, not the test questions{pool}.")
        else:
            notes.append(
                f"Scores during training use the test questions themselves, {who}{pool}. Set `dev_size` to hold out "
                "dev questions for them; do not pick a step or a setting by these."
            )
    groups = answer_groups_note(metrics)
    if groups:
        notes.append(groups[0].upper() + groups[1:] + ".")
    if isinstance(whole.get("relevance"), str):
        notes.append(
            "NDCG@10 uses graded relevance (the data's grades, as MTEB scores them)."
            if whole["relevance"] == "graded"
            else "Relevance is binary: every answer of a question counts 1."
        )
    if "drop_shared" in data:
        notes.append(
            f"The split is the data's own ({data.get('split', 'given')}); `drop_shared: {data['drop_shared']}` "
            + (
                "dropped only the training pairs whose question is held out, and kept "
                f"{data.get('train_pairs_sharing_an_answer', '?')} that share an answer with a held-out question."
                if data["drop_shared"] == "questions"
                else f"also dropped the {data.get('train_pairs_sharing_an_answer', '?')} training pairs that share "
                "an answer with a held-out question."
            )
        )
    if "triplet_accuracy" in metrics.get("baseline", {}):
        notes.append(f"`triplet_accuracy`: {TRIPLET_NOTE}.")
    return [f"- {note}" for note in notes]


def save_figure(figure: Any, path: Path) -> bool:
    """Lay out, write as PNG, and free the figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def plot_loss(history: list[dict[str, Any]], path: Path) -> bool:
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in history if "loss" in e]
    evaluation = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    if not train and not evaluation:
        return False
    figure, axis = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "training loss"), (evaluation, "evaluation loss")):
        if points:
            axis.plot(*zip(*points), marker="o", markersize=3, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("MNRL loss")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)


def plot_eval_metrics(metrics: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    names = list(metrics["baseline"])
    if not names:
        return False
    # Baseline and final are whole-pool test scores: they belong on the curve only when the steps were scored on
    # the same questions and pool (older metrics.json files hold the split's name alone).
    protocol = metrics.get("evaluation", {})
    steps, whole = protocol.get("during_training", "test"), protocol.get("baseline_and_final", "test")
    on_test = steps == "test" if isinstance(steps, str) else steps == whole
    split = steps if isinstance(steps, str) else steps.get("split", "test")
    figure, axis = plt.subplots(figsize=(7, 4))
    last_step = max([e["step"] for e in metrics["history"]], default=0)
    for name in names:
        points = [(0, metrics["baseline"][name])] if on_test else []
        points += [(e["step"], e[name]) for e in metrics["history"] if name in e]
        if on_test and name in metrics["final"] and (not points or points[-1][0] != last_step):
            points.append((last_step, metrics["final"][name]))
        if points:
            axis.plot(*zip(*points), marker="o", markersize=3, label=name)
    axis.set_title("test questions (step 0: baseline)" if on_test else f"{split} questions, the steps' own pool")
    axis.set_xlabel("step")
    axis.set_ylabel("score")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    return save_figure(figure, path)


def plot_baseline_vs_final(metrics: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt
    import numpy as np

    changes = metric_changes(metrics["baseline"], metrics["final"])
    if not changes:
        return False
    names = [name for name, _, _ in changes]
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4.5))
    for offset, label, values in (
        (-0.2, "baseline", [b for _, b, _ in changes]),
        (0.2, "final", [f for _, _, f in changes]),
    ):
        bars = axis.bar(positions + offset, values, width=0.4, label=label)
        axis.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    axis.set_xticks(positions, names, rotation=30, ha="right")
    axis.set_ylim(0, 1.25)  # room above the bars for their value labels
    axis.grid(axis="y", alpha=0.3)
    # Above the plot, not over the bars.
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return save_figure(figure, path)


def plot_similarities(similarities: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    stages = [stage for stage in ("baseline", "final") if similarities.get(stage, {}).get("positive")]
    if not stages:
        return False
    values = [v for stage in stages for kind in ("positive", "negative") for v in similarities[stage][kind]]
    bounds = (min(values), max(values))
    figure, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), sharex=True, sharey=True, squeeze=False)
    for axis, stage in zip(axes[0], stages):
        for kind, color in (("positive", "tab:green"), ("negative", "tab:red")):
            axis.hist(similarities[stage][kind], bins=30, range=bounds, alpha=0.6, color=color, label=f"query-{kind}")
        axis.set_title("before training" if stage == "baseline" else "after training")
        axis.set_xlabel("similarity")
        axis.legend()
    axes[0][0].set_ylabel("pairs")
    return save_figure(figure, path)


SCORE_ROWS = (
    ("query_positive", "query-positive"),
    ("query_negative", "query-negative"),
    ("positive_negative", "negative vs its positive"),
)


def mining_section(mining: dict[str, Any], plot: str | None) -> list[str]:
    """The report's Mining section from ``mining.json``: pairs kept and left out, the score distributions as a
    table, what the filters removed, the near-duplicate rate and the histograms."""
    pairs, count = mining["pairs"], mining["num_negatives"]
    left_out = []
    if pairs["without_negative"]:
        left_out.append(f"{pairs['without_negative']:,} got no negative that passes the filters")
    if pairs["too_few_negatives"]:
        left_out.append(f"{pairs['too_few_negatives']:,} got fewer than {count}")
    shape = "(query, answer, negative) triplets" if count == 1 else f"rows of {count} negatives"
    lines = [
        "## Mining",
        "",
        f"- {pairs['kept']:,} of {pairs['total']:,} training pairs kept as {shape}"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
        + f" ({mining['search']} search).",
    ]
    candidates = mining["candidates"]
    filtered = {name: removed for name, removed in candidates["filtered"].items() if removed}
    ranked = max(candidates["ranked"], 1)
    if filtered:
        each = ", ".join(f"{name} {removed:,} ({removed / ranked:.1%})" for name, removed in filtered.items())
        lines.append(
            f"- Filters removed {sum(filtered.values()):,} of {candidates['ranked']:,} ranked candidates: {each}."
        )
    else:
        lines.append(f"- No filter removed any of the {candidates['ranked']:,} ranked candidates.")
    near = mining["near_duplicates"]
    lines.append(
        f"- Near-duplicates: {near['count']:,} of {mining['negatives']:,} negatives ({near['rate']:.1%}) have a "
        f"cosine above {near['threshold']} with their row's positive, most likely the query's own answer in other "
        "words (`mining.relative_margin`, `max_score` or `range_min` keep such candidates out)."
    )
    percentiles = list(mining["scores"]["query_positive"]["quantiles"])
    lines += [
        "",
        "| cosine (mining model) | count | mean | std | " + " | ".join(f"{q}%" for q in percentiles) + " |",
        "| --- " * (4 + len(percentiles)) + "|",
    ]
    for key, label in SCORE_ROWS:
        summary = mining["scores"][key]
        values = [summary["mean"], summary["std"], *(summary["quantiles"][q] for q in percentiles)]
        cells = " | ".join("-" if value is None else f"{value:.3f}" for value in values)
        lines.append(f"| {label} | {summary['count']:,} | {cells} |")
    if plot is not None:
        caption = "Mining scores: query-positive vs query-negative, and each negative against its positive"
        lines += ["", f"![{caption}]({plot})"]
    return lines


def plot_mining(mining: dict[str, Any], path: Path) -> bool:
    """Two panels from ``mining.json``'s histograms: query-positive vs query-negative scores, and each negative's
    cosine with its row's positive, with the near-duplicate line."""
    import matplotlib.pyplot as plt
    import numpy as np

    edges = np.asarray(mining["histogram_edges"])
    scores = mining["scores"]
    if not scores["query_positive"]["count"]:
        return False
    counts = np.array([scores[key]["histogram"] for key, _ in SCORE_ROWS])
    used = np.flatnonzero(counts.sum(axis=0))
    low, high = edges[max(used[0] - 1, 0)], edges[min(used[-1] + 2, len(edges) - 1)]
    threshold = mining["near_duplicates"]["threshold"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    # Shares, not counts: with several negatives per pair the negatives outnumber the positives.
    for (key, label), color in zip(SCORE_ROWS[:2], ("tab:green", "tab:red")):
        share = np.asarray(scores[key]["histogram"]) / max(scores[key]["count"], 1)
        left.stairs(share, edges, fill=True, alpha=0.5, color=color, label=f"{label} ({scores[key]['count']:,})")
    left.set_title("similarity to the query")
    left.set_ylabel("share")
    right.stairs(scores["positive_negative"]["histogram"], edges, fill=True, alpha=0.6, color="tab:purple")
    right.axvline(threshold, color="black", linestyle="--", label=f"near-duplicate ({threshold})")
    right.set_title("each negative vs its row's positive")
    right.set_ylabel("negatives")
    for axis in (left, right):
        axis.set_xlim(low, max(high, threshold + 0.025) if axis is right else high)
        axis.set_xlabel("cosine (mining model)")
        axis.grid(alpha=0.3)
        axis.legend()
    return save_figure(figure, path)


def read_mining(path: Path) -> dict[str, Any] | None:
    """A run's ``mining.json``, or None when it has none (older runs) or it cannot be read (a warning says so: the
    rest of the report does not depend on it)."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except OutputError as exc:
        logger.warning("%s: the report leaves out its Mining section", exc)
        return None
