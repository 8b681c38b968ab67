"""What metrics.json records about how a run was made."""

from __future__ import annotations

import re
from pathlib import Path

from embedft.config.parsing import load_config
from embedft.models.sources import packaged_model_path
from embedft.run.provenance import git_commit, hub_revision, provenance
from tests.conftest import lay_out_like_hub_cache


def test_versions_and_the_checkouts_commit_are_recorded():
    record = provenance(load_config())
    for name in ("python", "torch", "transformers", "sentence-transformers", "datasets", "embedft"):
        assert record["versions"][name]
    assert re.fullmatch(r"[0-9a-f]{40}", record["git_commit"])  # the tests run from a git checkout
    assert record["hub_revisions"] == {}  # packaged model and data: no hub revision


def test_no_commit_outside_a_git_checkout_and_no_error(tmp_path):
    assert git_commit(tmp_path) == {}


def test_another_projects_repository_is_not_taken_for_embedfts(tmp_path):
    import subprocess

    installed = tmp_path / ".venv" / "site-packages" / "embedft"  # an installed copy inside someone's project
    installed.mkdir(parents=True)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "theirs"], check=True)
    assert git_commit(installed) == {}


def test_a_hub_model_records_its_cached_snapshot_commit(tmp_path):
    snapshot = lay_out_like_hub_cache(tmp_path, "org/model", Path(packaged_model_path("packaged:all-MiniLM-L6-v2")))
    assert hub_revision("org/model", "model", str(tmp_path)) == snapshot.name
    config = load_config(None, ["model_name=org/model", f"cache_dir={tmp_path}"])
    assert provenance(config)["hub_revisions"] == {"model_name": {"name": "org/model", "revision": snapshot.name}}
    assert hub_revision("packaged:all-MiniLM-L6-v2", "model", None) is None
