"""Config loading: typed, validated, with one-line errors that name the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embedft.config.parsing import load_config, reference, save_config
from embedft.config.schema import RunConfig, all_keys
from embedft.errors import ConfigError
from embedft.masking import mask_secrets
from tests.conftest import ROOT

DEFAULT = ROOT / "configs" / "run_embedding_mnrl.yaml"
SEED_RECIPE = ROOT / "configs" / "embeddinggemma-xyneft.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_equals_embedded_defaults():
    assert load_config(DEFAULT) == RunConfig()


def test_shipped_config_names_every_key_of_the_seed():
    text = DEFAULT.read_text()
    seed_keys = [
        "dataset_name", "sample_size", "test_size", "seed", "model_name", "mining_model_name", "num_epochs",
        "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "cache_dir", "num_negatives", "margin",
        "range_min", "range_max", "sampling_strategy", "gradient_checkpointing", "fp16", "bf16", "eval_steps",
        "save_steps", "logging_steps",
    ]  # fmt: skip
    for key in seed_keys:
        assert re.search(rf"^\s*{key}:", text, re.MULTILINE), key


def test_seed_recipe_config_is_the_seed_exactly():
    config = load_config(SEED_RECIPE)
    assert config.model_name == "google/embeddinggemma-300m"
    assert config.mining_model_name == "sentence-transformers/static-retrieval-mrl-en-v1"
    assert config.dataset_name == "ayushexel/xyneft"
    assert (config.query_column, config.answer_column) == ("query", "answer")
    assert (config.sample_size, config.test_size, config.seed) == (1080, 250, 12)
    assert (config.num_epochs, config.batch_size, config.learning_rate) == (8, 128, 3e-5)
    assert config.training.bf16 and not config.training.fp16
    assert config.cache_dir == "/models"


def test_learning_rate_written_without_a_dot_is_a_number(tmp_path):
    assert load_config(write(tmp_path, "learning_rate: 3e-5\n")).learning_rate == pytest.approx(3e-5)


def test_overrides_change_single_keys():
    config = load_config(DEFAULT, ["num_epochs=1", "mining.num_negatives=2", "training.report_to=[]"])
    assert config.num_epochs == 1
    assert config.mining.num_negatives == 2
    assert config.training.report_to == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("num_epoch: 3\n", "unknown config key 'num_epoch': did you mean 'num_epochs'?"),
        (
            "mining:\n  num_negative: 2\n",
            "unknown config key 'mining.num_negative': did you mean 'mining.num_negatives'?",
        ),
        ("eval_steps: 5\n", "unknown config key 'eval_steps': did you mean 'training.eval_steps'?"),
    ],
)
def test_unknown_key_suggests_the_closest(tmp_path, text, expected):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("batch_size: big\n", "'batch_size' must be an integer"),
        ("training:\n  bf16: 1\n", "'training.bf16' must be true/false"),
        ("mining:\n  sampling_strategy: best\n", "'mining.sampling_strategy' must be 'top' or 'random'"),
        ("learning_rate: -0.1\n", "'learning_rate' must be greater than 0"),
        ("batch_size: 0\n", "'batch_size' must be greater than 0"),
        ("num_epochs: 0\n", "'num_epochs' must be greater than 0"),
        ("learning_rate: nan\n", "'learning_rate' must be a number, got 'nan'"),
        ("learning_rate: .inf\n", "'learning_rate' must be a number, got inf"),
        ("max_seq_length: 0\n", "'max_seq_length' must be greater than 0 or null"),
        ("training:\n  dataloader_num_workers: -1\n", "'training.dataloader_num_workers' must be 0 or more"),
        ("test_size: 1.5\n", "'test_size' as a fraction must lie in (0, 1)"),
        ("mining:\n  range_min: 50\n  range_max: 10\n", "must be smaller than 'mining.range_max'"),
        ("mining:\n  num_negatives: 20\n  range_max: 10\n", "exceeds the candidate window"),
        ("mining:\n  num_negatives: -1\n", "'mining.num_negatives' must be 0 (in-batch negatives only) or more"),
        ("training:\n  fp16: true\n  bf16: true\n", "both true"),
        ("mining: 3\n", "'mining' must be a section"),
        ("evaluation:\n  max_pool: 0\n", "'evaluation.max_pool' must be greater than 0, or null for the whole pool"),
        ("evaluation:\n  max_queries: -1\n", "'evaluation.max_queries' must be greater than 0, or null for all"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(write(tmp_path, text))


def test_evaluation_during_training_is_bounded_by_default_and_null_means_everything(tmp_path):
    assert (RunConfig().evaluation.max_pool, RunConfig().evaluation.max_queries) == (2_000, None)
    config = load_config(write(tmp_path, "evaluation:\n  max_pool: null\n  max_queries: 50\n"))
    assert (config.evaluation.max_pool, config.evaluation.max_queries) == (None, 50)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML: mapping values are not allowed here at line 2, column 6"):
        load_config(write(tmp_path, "seed: 1\n  bad: [\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_a_yaml_error_gives_pyyamls_reason_line_and_column(tmp_path):
    lines = ["seed: 1"] * 19 + ["num_epochs 3", "batch_size: 8"]  # the colon is missing on line 20
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "\n".join(lines) + "\n"))
    assert str(error.value).endswith(
        "is not valid YAML: could not find expected ':' at line 21, column 1 (while scanning a simple key at line 20, "
        "column 1)"
    )


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "num_epochs: 1\nseed: 2\nnum_epochs: 3\n"))
    assert str(error.value).endswith(
        "config.yaml: 'num_epochs' is given twice, at line 1 and line 3: keep one of them"
    )


def test_a_key_given_twice_in_a_section_is_named_with_its_section(tmp_path):
    text = "mining:\n  num_negatives: 1\n  batch_size: 4\n  num_negatives: 2\n"
    with pytest.raises(ConfigError, match="'mining.num_negatives' is given twice, at line 2 and line 4"):
        load_config(write(tmp_path, text))


def test_merge_keys_may_be_overridden_in_the_mapping_that_merges_them(tmp_path):
    text = "mining: &shared\n  batch_size: 4\nevaluation:\n  <<: *shared\n  batch_size: 8\n"
    assert load_config(write(tmp_path, text)).evaluation.batch_size == 8


def test_an_override_given_twice_is_refused():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["num_epochs=1", "seed=3", "num_epochs=2"])
    assert str(error.value) == (
        "'num_epochs' is set twice in the overrides ('num_epochs=1' and 'num_epochs=2'): keep one of them"
    )


def test_an_override_of_a_section_may_not_repeat_a_key_of_it():
    with pytest.raises(ConfigError, match="'mining.num_negatives' is set twice in the overrides"):
        load_config(None, ["mining.num_negatives=2", "mining={num_negatives: 3}"])
    with pytest.raises(ConfigError, match="'eval_steps' is given twice, at line 1, columns 2 and 17"):
        load_config(None, ["training={eval_steps: 5, eval_steps: 6}"])


def test_an_override_of_a_section_keeps_its_other_keys(tmp_path):
    config = load_config(write(tmp_path, "mining:\n  num_negatives: 2\n"), ["mining={batch_size: 4}"])
    assert (config.mining.num_negatives, config.mining.batch_size) == (2, 4)


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="is not key=value"):
        load_config(None, ["num_epochs"])


def test_configuration_reference_documents_every_key():
    """docs/configuration.md holds the config reference (the README links to it): every key, and the table exactly as
    scripts/show_config.py --reference prints it now."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in all_keys() if f"| `{key}` |" not in text]
    assert not missing, f"docs/configuration.md config reference lacks {missing}: paste make config-reference there"
    assert reference() in text, "docs/configuration.md's config table is out of date: paste make config-reference"
    assert "docs/configuration.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_tokens_and_url_credentials_are_refused_and_never_saved(tmp_path):
    token = "hf_" + "a1B2" * 9
    for override in (f"model_name=https://me:{token}@example.com/model", f"run_name=run-{token}"):
        with pytest.raises(ConfigError, match="looks like an access token or password: remove it"):
            load_config(None, [override])
    # A config built some other way is still saved with the secret masked.
    config = RunConfig(model_name=f"https://me:{token}@example.com/model", run_name=f"run-{token}")
    save_config(config, tmp_path / "config.yaml")
    saved = (tmp_path / "config.yaml").read_text()
    assert token not in saved and "https://***@example.com/model" in saved and "run_name: run-***" in saved
    assert mask_secrets({"a": ["plain/path", 3, "/data/hf_medquad"]}) == {"a": ["plain/path", 3, "/data/hf_medquad"]}


def test_an_override_with_a_colon_and_spaces_stays_text():
    from embedft.cli.common import split_overrides

    # What the shell hands over for SET="query_prompt='query: ' batch_size=8" (make infer-embed: --set-line).
    overrides = split_overrides("query_prompt='query: ' document_prompt='passage: ' batch_size=8")
    config = load_config(None, overrides)
    assert (config.query_prompt, config.document_prompt, config.batch_size) == ("query: ", "passage: ", 8)
    assert load_config(None, ["training={eval_steps: 5}"]).training.eval_steps == 5  # a flow mapping stays one
    assert load_config(None, ["query_prompt=Question #1: "]).query_prompt == "Question #1: "  # not a YAML comment
    with pytest.raises(ConfigError, match="balance its quotes"):
        split_overrides("query_prompt='query: ")
