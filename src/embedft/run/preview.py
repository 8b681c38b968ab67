"""The dry run (``embedft train --dry-run``): the data as the config maps it, before anything loads or is written."""

from __future__ import annotations

from embedft.columns import ANSWER, GIVEN_NEGATIVES, QUERY
from embedft.config.schema import RunConfig
from embedft.data.prepared import prepare_data
from embedft.evaluation.headroom import few_answers_warning
from embedft.text import shorten


def preview_data(config: RunConfig, rows: int = 3) -> str:
    """What ``--dry-run`` prints: where the pairs come from, the first ``rows`` training pairs as the configured
    columns mapped them, and the sizes of each split after cleaning. Loads no model and writes nothing."""
    data = prepare_data(config)
    train = data.splits["train"]
    lines = [
        f"Data: {config.dataset_name} (data_format: {config.data_format}, query_column: '{config.query_column}', "
        f"answer_column: '{config.answer_column}'; the log says how FlagEmbedding or Tevatron rows were read)"
    ]
    for index in range(min(rows, len(train))):
        row = train[index]
        lines.append(f"  pair {index + 1}:")
        lines.append(f"    query:  {shorten(row[QUERY])}")
        lines.append(f"    answer: {shorten(row[ANSWER])}")
        if row.get(GIVEN_NEGATIVES):
            lines.append(
                f"    given negatives: {len(row[GIVEN_NEGATIVES])}, first: {shorten(row[GIVEN_NEGATIVES][0])}"
            )
    counts = data.counts()
    lines.append("Sizes: " + ", ".join(f"{key} {value:,}" for key, value in counts.items()))
    few = few_answers_warning(counts["eval_answers"], counts["eval_questions"])
    lines += [f"warning: {few}"] if few else []
    lines.append("Dry run: nothing was trained or written.")
    return "\n".join(lines)
