"""The final model's card: it names the data set and base model, and carries the baseline/final scores; and the
hub push happens only with hub_model_id."""

from __future__ import annotations

from embedft.config.parsing import load_config
from embedft.run.modelcard import RESULTS_START, dataset_card_entry, describe_model, publish_final_model, write_results

METRICS = {
    "baseline": {"ndcg@10": 0.75, "mrr@10": 0.71, "triplet_accuracy": 0.6},
    "final": {"ndcg@10": 0.83, "mrr@10": 0.79, "triplet_accuracy": 0.77},
    "evaluation": {"baseline_and_final": {"split": "test", "questions": 100, "documents": 503}},
}
CARD = "---\nlanguage: []\n---\n# A model\n\n## Usage\n\ntext\n\n## Training Details\n\ndetails\n"


def test_data_sets_are_named_by_hub_id_packaged_title_or_file_name(tmp_path):
    assert dataset_card_entry("ayushexel/xyneft") == {"name": "ayushexel/xyneft", "id": "ayushexel/xyneft"}
    assert "construction FAQ" in dataset_card_entry("packaged:construction-faq")["name"]
    assert dataset_card_entry(str(tmp_path / "my_pairs.jsonl")) == {"name": "my_pairs.jsonl"}


def test_card_data_is_filled_from_the_config():
    from embedft.models.loading import load_model

    model = load_model("packaged:all-MiniLM-L6-v2", "cpu")
    model.model_card_data.train_datasets = [{"name": None, "split": "train"}]  # as the trainer leaves it
    config = load_config(
        None, ["dataset_name=data/my_pairs.jsonl", "language=sv", "license=apache-2.0", "hub_model_id=me/my-model"]
    )
    describe_model(model, config)
    card = model.model_card_data
    assert card.train_datasets == [{"name": "my_pairs.jsonl", "split": "train"}]
    assert (card.language, card.license, card.model_id) == (["sv"], "apache-2.0", "me/my-model")
    assert card.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.model_name == "all-MiniLM-L6-v2 fine-tuned on my_pairs.jsonl"


def test_results_go_before_training_details_and_a_rerun_replaces_them(tmp_path):
    (tmp_path / "README.md").write_text(CARD, encoding="utf-8")
    write_results(tmp_path, METRICS)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert card.index("## Usage") < card.index("## Fine-tuning results") < card.index("## Training Details")
    assert "| ndcg@10 | 0.7500 | 0.8300 | +0.0800 |" in card
    assert "100 held-out test questions, each ranking 503 documents" in card
    write_results(tmp_path, {**METRICS, "final": {**METRICS["final"], "ndcg@10": 0.9}})
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert card.count(RESULTS_START) == 1 and "| ndcg@10 | 0.7500 | 0.9000 | +0.1500 |" in card


def test_nothing_is_pushed_without_hub_model_id(tmp_path, monkeypatch):
    import embedft.run.modelcard

    def push(*args, **kwargs):
        raise AssertionError("pushed without hub_model_id")

    monkeypatch.setattr(embedft.run.modelcard, "push_model", push)
    assert publish_final_model(None, tmp_path, load_config(), METRICS) == {}
    assert "## Fine-tuning results" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_push_offline_is_one_warning_and_keeps_the_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    config = load_config(None, ["hub_model_id=me/my-model"])
    record = publish_final_model(None, tmp_path, config, METRICS)["hub"]
    assert record["model_id"] == "me/my-model" and record["pushed"] is False
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "Not pushed to me/my-model" in warning.getMessage() and "hf upload me/my-model" in warning.getMessage()
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"
