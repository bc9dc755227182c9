"""lineage.json: written atomically, read back with clear errors, chained to parents."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from training.lineage import (
    LineageError,
    git_commit,
    lineage_chain,
    lineage_sha256,
    parent_info,
    read_lineage,
    sha256_examples,
    sha256_file,
    write_lineage,
)


def test_write_then_read_fills_defaults(tmp_path):
    path = write_lineage(tmp_path / "ckpt", system="ESConv", config={"lr": 1e-5, "p": tmp_path})
    assert path == tmp_path / "ckpt" / "lineage.json"
    record = read_lineage(tmp_path / "ckpt")
    assert record == read_lineage(path)
    assert record["system"] == "ESConv" and record["parent"] is None
    assert record["config"] == {"lr": 1e-5, "p": str(tmp_path)}  # non-JSON values as str
    assert record["backend"] == {"backend": "vllm"}
    assert record["created_at"].endswith("+00:00")
    assert record["git_commit"] == git_commit()
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_git_commit_outside_a_repo_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    (tmp_path / "repo").mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}  # fmt: skip
    run = dict(cwd=tmp_path / "repo", env=env, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q"], **run)
    assert git_commit(tmp_path / "repo") == "unknown"  # no commit yet
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], **run)
    head = subprocess.run(["git", "rev-parse", "HEAD"], text=True, **run).stdout.strip()
    assert git_commit(tmp_path / "repo") == head and len(head) == 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no lineage.json"),
        ("{not json", "unreadable"),
        ("[1, 2]", "expected a JSON object"),
        ('{"system": "x"}', "missing required key"),
    ],
)
def test_read_errors_name_the_file(tmp_path, content, message):
    if content is not None:
        (tmp_path / "lineage.json").write_text(content)
    with pytest.raises(LineageError, match=message) as exc:
        read_lineage(tmp_path)
    assert str(tmp_path / "lineage.json") in str(exc.value)


def test_system_is_required(tmp_path):
    with pytest.raises(LineageError, match="system"):
        write_lineage(tmp_path, config={})


def test_parent_chain_and_hashes(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    assert parent_info(base) == {"path": str(base.resolve()), "lineage_sha256": None}
    assert parent_info("meta-llama/Llama-3.1-8B-Instruct")["lineage_sha256"] is None
    sft = write_lineage(tmp_path / "sft", system="CARE-SFT", parent=parent_info(base)).parent
    rl = write_lineage(tmp_path / "rl", system="CARE-SFT-RL", parent=parent_info(sft)).parent
    expected = hashlib.sha256((sft / "lineage.json").read_bytes()).hexdigest()
    assert read_lineage(rl)["parent"] == {"path": str(sft.resolve()), "lineage_sha256": expected}
    assert lineage_sha256(sft) == expected and lineage_sha256(base) is None
    assert [r["system"] for r in lineage_chain(rl)] == ["CARE-SFT-RL", "CARE-SFT"]


def test_hash_helpers_match_hashlib(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(b"abc")
    # sha256("abc") from FIPS 180-2, appendix B.1
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    line = json.dumps({"a": 1}, sort_keys=True) + "\n"
    assert sha256_examples([{"a": 1}]) == hashlib.sha256(line.encode()).hexdigest()


def test_register_with_site_registers_through_the_management_command(tmp_path, monkeypatch):
    """Training's opt-in `register` flag: a subprocess, so training never imports Django."""
    import sqlite3
    import sys

    from training.lineage import LineageError, register_with_site, write_lineage

    db = tmp_path / "site.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("EVALSITE_VAR_DIR", str(tmp_path / "var"))
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=repo, check=True)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_lineage(folder, system="ESConv", backend={"backend": "vllm", "reasoning": False})
    assert "registered ESConv v1" in register_with_site(folder)
    rows = sqlite3.connect(db).execute("SELECT version, path FROM pairwise_checkpoint").fetchall()
    assert rows == [(1, str(folder.resolve()))]
    with pytest.raises(LineageError, match="already registered"):
        register_with_site(folder)
    with pytest.raises(LineageError, match="no checkpoint folder"):
        register_with_site(tmp_path / "missing")


def test_generation_defaults_read_what_training_recorded(tmp_path):
    from training.lineage import checkpoint_generation_defaults

    gen = {"window": 8, "max_new_tokens": 1024, "budget_from": "max_completion_length",
           "seeker_placeholder": None}  # fmt: skip
    write_lineage(tmp_path / "new", system="CARE-SFT-RL", generation=gen)
    got = checkpoint_generation_defaults(tmp_path / "new")
    assert (got.window, got.max_new_tokens, got.seeker_placeholder, got.source) == (
        8, 1024, None, "lineage",
    )  # fmt: skip
    # written before the "generation" key: the config's window, and the "..." turn of that time
    write_lineage(tmp_path / "old", system="CARE-SFT",
                  config={"DataArguments": {"window": 2}, "SFTConfig": {}})  # fmt: skip
    old = checkpoint_generation_defaults(tmp_path / "old")
    assert (old.window, old.max_new_tokens, old.seeker_placeholder, old.source) == (
        2, None, "...", "legacy",
    )  # fmt: skip
    assert checkpoint_generation_defaults(tmp_path / "hub-model").source == "none"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lineage.json").write_text("{not json")
    with pytest.raises(LineageError, match="broken/lineage.json: unreadable"):
        checkpoint_generation_defaults(tmp_path / "broken")
