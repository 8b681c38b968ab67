"""The report's sections on what the run chose and what it changed: the dev questions, the checkpoint, the merge
with the base model, and the test questions that got better or worse."""

from __future__ import annotations

from typing import Any

from embedft.text import shorten


def rank_text(rank: int | None) -> str:
    return str(rank) if rank is not None else "below 100"


def choice_section(metrics: dict[str, Any]) -> list[str]:
    """How the final model was chosen: the dev questions (or why there were none), the step it came from, and the
    weight of the merge with the base model with each weight's dev score."""
    data, training, merge = metrics.get("data", {}), metrics.get("training", {}), metrics.get("merge")
    if "dev" not in data and "chosen_step" not in training and merge is None:
        return []
    lines = ["## How the final model was chosen", ""]
    if data.get("dev_questions"):
        lines.append(
            f"- Dev questions: {data['dev_questions']} held out of training"
            + (f" ({data['dev']})." if "dev" in data else ".")
        )
    elif "dev" in data:
        lines.append(f"- Dev questions: {data['dev']}.")
    if "chosen_step" in training:
        lines.append(
            f"- Checkpoint: step {training['chosen_step']} of {training.get('global_step', '?')}, the best on the dev "
            "questions (`training.best_on_dev`)."
        )
    elif data.get("dev_questions"):
        lines.append(f"- Checkpoint: the last step, {training.get('global_step', '?')}.")
    if merge is not None:
        weight = merge.get("weight", 1.0)
        kept = "the trained model as it is" if weight == 1.0 else f"(1 - {weight}) x base + {weight} x trained"
        setting, reason = merge.get("setting"), merge.get("reason", "")
        lines.append(f"- Merge with the base model (`merge_with_base: {setting}`): {kept}; {reason}.")
        scores = merge.get("dev_scores") or {}
        if scores:
            lines += ["", f"| weight a of the trained model | dev {merge.get('metric', 'ndcg@10')} |", "| --- | --- |"]
            lines += [
                f"| {a}{' (chosen)' if float(a) == weight else ''} | {score:.4f} |" for a, score in scores.items()
            ]
    return lines


def questions_section(changes: dict[str, Any] | None) -> list[str]:
    """The test questions whose first right answer moved most, up and down, with their top documents before and
    after, and how many improved, stayed and got worse (``questions.json``)."""
    if not changes or not changes.get("questions"):
        return []
    lines = [
        "## Which questions got better or worse",
        "",
        f"Of {changes['questions']} test questions, the first right answer ranks higher for {changes['improved']}, "
        f"the same for {changes['unchanged']} and lower for {changes['worse']} (ranks among the whole pool; "
        "`questions.json` has these lists).",
    ]
    for title, key in (("Improved most", "most_improved"), ("Worse most", "most_worsened")):
        entries = changes.get(key) or []
        if not entries:
            continue
        lines += ["", f"### {title}", ""]
        for entry in entries:
            lines.append(
                f"- **{entry['question']}**: rank {rank_text(entry['rank_before'])} -> "
                f"{rank_text(entry['rank_after'])}. Right answer: {shorten(entry['right_answer'] or '', 100)}"
            )
            for when in ("before", "after"):
                tops = "; ".join(f"{i}. {shorten(text, 80)}" for i, text in enumerate(entry[f"top_{when}"], 1))
                lines.append(f"  - top 3 {when}: {tops}")
    return lines
