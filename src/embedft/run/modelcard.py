"""The final model's card (``final/README.md``): what it was trained from and on, and how much fine-tuning gained.

sentence-transformers writes the card when the model is saved, from ``model.model_card_data``; left alone it names
the base model by a local path and the data "Unnamed Dataset". :func:`describe_model` fills in what the config knows
before the save; the baseline and final scores exist only after the saved model was reloaded and scored, so
:func:`write_results` adds them to the written card afterwards, as a section of its own that a rerun replaces.

"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedft.config.schema import RunConfig
from embedft.hub import is_hub_name, push_model
from embedft.run.provenance import hub_revision
from embedft.run.report import comparison_table

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer import SentenceTransformer


logger = logging.getLogger(__name__)

CARD = "README.md"

RESULTS_START = "<!-- embedft:results -->"

RESULTS_END = "<!-- /embedft:results -->"

RESULTS_BLOCK = re.compile(re.escape(RESULTS_START) + r".*?" + re.escape(RESULTS_END) + r"\n?", re.DOTALL)

# The packaged model and data set: where they come from, so the card can link and name them.
PACKAGED_MODELS = {"packaged:all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}

PACKAGED_DATASETS = {"packaged:construction-faq": ("English construction FAQ (zaragoza-construction-faq)", "en")}


def dataset_card_entry(name: str) -> dict[str, str]:
    """How the card names a configured data set: its hub id (linked), the packaged data set's title, or the file or
    folder name (never a full local path, which says nothing to a reader of the card)."""
    if name in PACKAGED_DATASETS:
        return {"name": PACKAGED_DATASETS[name][0]}
    if is_hub_name(name) and not Path(name).exists():
        return {"name": name, "id": name}
    return {"name": Path(name).expanduser().name or name}


def base_model_id(name: str) -> str | None:
    """The hub id of the model that was fine-tuned, when it has one (a hub name or the packaged MiniLM); None for a
    local folder or a distilled static model."""
    if name in PACKAGED_MODELS:
        return PACKAGED_MODELS[name]
    if is_hub_name(name) and not Path(name).exists():
        return name
    return None


def card_model_name(config: RunConfig) -> str:
    """The card's title: the base model's short name and the data it was fine-tuned on."""
    base = base_model_id(config.model_name) or config.model_name.removeprefix("static:")
    short = base.rstrip("/").rsplit("/", 1)[-1]
    return f"{short} fine-tuned on {dataset_card_entry(config.dataset_name)['name']}"


def describe_model(model: SentenceTransformer, config: RunConfig) -> None:
    """Fill ``model.model_card_data`` from the config before the final model is saved, so its card names the data
    set (not "Unnamed Dataset"), the base model, language, license, and (with ``hub_model_id``) the hub id the usage
    example loads.

    Call it after training: the trainer sets the card's data sets from the training rows, without a name.
    """
    card = model.model_card_data
    train_entry = dataset_card_entry(config.dataset_name)
    eval_entry = dataset_card_entry(config.eval_dataset_name or config.dataset_name)
    for entries, entry in ((card.train_datasets, train_entry), (card.eval_datasets, eval_entry)):
        for dataset in entries:
            dataset.update(entry)
    if not card.train_datasets:
        card.train_datasets = [dict(train_entry)]
    language = config.language or PACKAGED_DATASETS.get(config.dataset_name, (None, None))[1]
    if language:
        card.set_language(language)
    if config.license:
        card.set_license(config.license)
    base = base_model_id(config.model_name)
    if base is not None and not card.base_model:
        card.base_model = base
        card.base_model_revision = hub_revision(config.model_name, "model", config.cache_dir)
    card.model_name = card_model_name(config)
    if config.hub_model_id:
        card.set_model_id(config.hub_model_id)
    card.add_tags("embedft")


def results_section(metrics: dict[str, Any]) -> str:
    """The card's section with the baseline and final scores (every metric both have) and what they were measured
    on, between markers so that it can be replaced."""
    evaluation = metrics.get("evaluation", {}).get("baseline_and_final", {})
    questions, documents = evaluation.get("questions"), evaluation.get("documents")
    measured = (
        f"{questions} held-out {evaluation.get('split', 'test')} questions, each ranking {documents} documents"
        if questions and documents
        else "the held-out test questions"
    )
    lines = [
        RESULTS_START,
        "## Fine-tuning results",
        "",
        f"Measured by embedft on {measured}: **baseline** is the base model, **final** this model reloaded from "
        "disk, both scored alike (fp32, same evaluator). Read the ranking metrics (ndcg@10, mrr@10, accuracy@1) "
        "first.",
        "",
        *comparison_table(metrics["baseline"], metrics["final"]),
    ]
    return "\n".join([*lines, "", RESULTS_END, ""])


def write_results(final_dir: Path, metrics: dict[str, Any]) -> Path:
    """Put :func:`results_section` into ``final_dir/README.md``: replacing an earlier one, else before "Training
    Details" (after the model's description and usage), else at the end; a missing card becomes just the section.

    Returns:
        The card's path.
    """
    path = Path(final_dir) / CARD
    card = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = results_section(metrics)
    if RESULTS_BLOCK.search(card):
        card = RESULTS_BLOCK.sub(lambda _: section, card, count=1)
    elif "\n## Training Details" in card:
        card = card.replace("\n## Training Details", f"\n{section}\n## Training Details", 1)
    else:
        card = f"{card.rstrip()}\n\n{section}" if card.strip() else section
    path.write_text(card, encoding="utf-8")
    return path


def publish_final_model(
    model: SentenceTransformer, final_dir: Path, config: RunConfig, metrics: dict[str, Any]
) -> dict[str, Any]:
    """The last step of a run before its results are written: the scores into the final model's card, then, with
    ``hub_model_id``, the model pushed to the hub (a failure is one warning; the local model is kept).

    Returns:
        ``{"hub": {"model_id", "pushed", "url" or "error"}}`` for ``metrics.json`` with ``hub_model_id``, else ``{}``.
    """
    write_results(final_dir, metrics)
    if not config.hub_model_id:
        return {}
    return {"hub": push_model(model, final_dir, config.hub_model_id, config.hub_private)}
