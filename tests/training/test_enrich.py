"""Enrichment: offline chains on real ESConv turns, resume after a crash, teacher retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.base import Generation
from models.care_format import NODES, parse_care_output
from training.datasets import load_dialogues, turn_examples
from training.datasets.strategies import ESCONV_STRATEGIES
from training.enrich import EnrichConfig, enrich, main
from training.teacher import check_teacher_chain

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"


@pytest.fixture(scope="module")
def examples():
    """The first 30 supporter turns of ESConv train (the real shared data)."""
    dialogues = load_dialogues("esconv", "train")[:3]
    return [ex for ex in turn_examples(dialogues, window=6) if ex.strategy][:30]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_offline_records_parse_and_name_the_gold_strategy(tmp_path, examples):
    out = tmp_path / "care.jsonl"
    stats = enrich(EnrichConfig(out=str(out)), examples=examples)
    assert stats["generated"] == len(examples) and stats["dropped"] == 0
    records = read(out)
    assert [(r["dialogue_id"], r["turn_index"]) for r in records] == [
        (ex.dialogue_id, ex.turn_index) for ex in examples
    ]
    for record, ex in zip(records, examples, strict=True):
        parsed = parse_care_output(record["target"])
        assert parsed.status == "complete"
        assert parsed.strategy == ex.strategy and ex.strategy in ESCONV_STRATEGIES
        assert parsed.response == ex.target.strip() == record["response"]
        assert parsed.nodes == record["chain"] and tuple(record["chain"]) == NODES
        assert record["provenance"] == {
            "teacher": "offline",
            "template": "offline_v2",
            "seed": 0,
            "attempts": 1,
        }
        assert len(record["history"]) == len(ex.history) <= 6
    # The chain is grounded in the annotations of the dialogue.
    first = records[0]
    assert first["problem_type"].lower() in first["chain"]["context"].lower()
    assert first["emotion_type"].lower() in first["chain"]["emotion"].lower()
    assert json.loads(Path(f"{out}.stats.json").read_text())["generated"] == len(examples)


def test_offline_is_deterministic_and_seed_varies_wording(tmp_path, examples):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    enrich(EnrichConfig(out=str(a), seed=0), examples=examples)
    enrich(EnrichConfig(out=str(b), seed=0), examples=examples)
    enrich(EnrichConfig(out=str(c), seed=1), examples=examples)
    assert a.read_bytes() == b.read_bytes()
    targets_a = [r["target"] for r in read(a)]
    targets_c = [r["target"] for r in read(c)]
    assert sum(x != y for x, y in zip(targets_a, targets_c, strict=True)) > len(targets_a) // 2


def test_resume_after_a_crash_mid_line(tmp_path, examples):
    full, out = tmp_path / "full.jsonl", tmp_path / "out.jsonl"
    enrich(EnrichConfig(out=str(full)), examples=examples)
    data = full.read_bytes()
    # Simulate a crash: 12 whole lines, then half of the 13th.
    lines = data.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:12]) + lines[12][: len(lines[12]) // 2])
    stats = enrich(EnrichConfig(out=str(out)), examples=examples)
    assert stats["skipped_done"] == 12 and stats["generated"] == len(examples) - 12
    assert out.read_bytes() == data  # same records, no duplicate, no partial line
    # A third run has nothing left to do.
    assert enrich(EnrichConfig(out=str(out)), examples=examples)["generated"] == 0


class ScriptedTeacher:
    """Answers each prompt from a per-example script of outputs, one per attempt."""

    def __init__(self, scripts: dict[int, list[str]]):
        self.scripts = scripts
        self.calls: list[int] = []

    def generate(self, requests):
        self.calls.append(len(requests))
        outs = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            key = next(k for k in self.scripts if f"TURN{k}|" in prompt)
            text = self.scripts[key].pop(0) if len(self.scripts[key]) > 1 else self.scripts[key][0]
            outs.append(Generation(text, 10, 10, "stop", 0.0))
        return outs


def chain(strategy: str, *, nodes=NODES) -> str:
    parts = {
        "context": "<context>c</context>",
        "cognition": "<cognition>g</cognition>",
        "emotion": "<emotion>e</emotion>",
        "plan": f'<plan strategy="{strategy}">p</plan>',
    }
    return "".join(parts[n] for n in nodes)


def test_teacher_retries_bad_chains_then_drops(tmp_path, examples):
    from dataclasses import replace

    exs = [replace(ex, target=f"TURN{i}| {ex.target}") for i, ex in enumerate(examples[:3])]
    gold = [ex.strategy for ex in exs]
    wrong = next(s for s in ESCONV_STRATEGIES if s != gold[0])
    teacher = ScriptedTeacher(
        {
            # wrong strategy, then a good chain after the teacher's own R1-style reasoning
            0: [chain(wrong), "<think>hmm, let me see</think>\n" + chain(gold[0].upper())],
            # missing node, then good
            1: [chain(gold[1], nodes=NODES[:3]), chain(gold[1])],
            # never good: dropped after 1 + max_retries attempts
            2: [chain(gold[2], nodes=("cognition", "context", "emotion", "plan"))],
        }
    )
    out = tmp_path / "teacher.jsonl"
    cfg = EnrichConfig(mode="teacher", out=str(out), max_retries=2, teacher_model="scripted-r1")
    stats = enrich(cfg, backend=teacher, examples=exs)
    # retried counts regeneration requests: 3 after the first attempt, 1 after the second
    assert (stats["generated"], stats["retried"], stats["dropped"]) == (2, 4, 1)
    assert teacher.calls == [3, 3, 1]  # all three, the three failures again, the last one
    assert stats["rejections"] == {"wrong_strategy": 1, "missing_node": 1, "out_of_order": 3}
    records = read(out)
    assert [r["turn_index"] for r in records] == [exs[0].turn_index, exs[1].turn_index]
    for record in records:
        assert record["provenance"]["teacher"] == "scripted-r1"
        assert record["provenance"]["template"] == "care_chain_v1"
        assert record["provenance"]["attempts"] == 2
        assert parse_care_output(record["target"]).strategy == record["strategy"]


def test_teacher_prompt_carries_the_gold_strategy_and_history(tmp_path, examples):
    seen = []

    class Echo:
        def generate(self, requests):
            seen.extend(r.messages[0]["content"] for r in requests)
            return [Generation(chain("Question"), 1, 1, "stop", 0.0) for _ in requests]

    ex = examples[5]
    enrich(
        EnrichConfig(mode="teacher", out=str(tmp_path / "t.jsonl")), backend=Echo(), examples=[ex]
    )
    assert f'strategy="{ex.strategy}"' in seen[0]
    assert ex.history[-1].text in seen[0] and ex.target in seen[0]
    assert "$" not in seen[0]  # every placeholder filled


def test_check_teacher_chain_reasons():
    assert check_teacher_chain(chain("Others"), "other")[1] == "ok"
    assert check_teacher_chain("", "Others") == (None, "missing_node")
    assert check_teacher_chain("<context>x", "Others") == (None, "malformed")


def test_cli_with_recipe_and_overrides(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    main(["--config", str(RECIPES / "enrich_offline.yaml"), "--limit", "5", "--out", str(out)])
    assert len(read(out)) == 5
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["generated"] == 5


def test_teacher_recipe_parses():
    from trl import TrlParser

    (cfg,) = TrlParser((EnrichConfig,)).parse_args_and_config(
        args=["--config", str(RECIPES / "enrich_teacher.yaml")]
    )
    # the DeepSeek API's name for R1; its hub id is for a local vLLM server
    assert cfg.mode == "teacher" and cfg.teacher_model == "deepseek-reasoner"
    assert cfg.settings()["base_url"] == "https://api.deepseek.com/v1"
    assert cfg.api_key_env == "DEEPSEEK_API_KEY"


# --- Resume: corrupt lines, dropped examples, accumulated stats, changed settings ------------


def test_a_corrupt_line_in_the_middle_is_moved_aside_and_the_lines_after_it_kept(
    tmp_path, examples
):
    full, out = tmp_path / "full.jsonl", tmp_path / "out.jsonl"
    enrich(EnrichConfig(out=str(full)), examples=examples)
    lines = full.read_bytes().splitlines(keepends=True)
    # line 6 is garbage, line 11 a JSON object that is not a record; the rest are intact
    broken = lines[:5] + [b'{"id": "esconv/train/0#9", "tar\n'] + lines[6:10] + [b"[1, 2]\n"]
    out.write_bytes(b"".join(broken + lines[11:]))
    stats = enrich(EnrichConfig(out=str(out)), examples=examples)
    assert stats["corrupt_lines"] == 2
    assert stats["skipped_done"] == len(examples) - 2 and stats["generated"] == 2
    records = read(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in read(full))
    assert sorted(out.read_bytes().splitlines()) == sorted(full.read_bytes().splitlines())
    moved = read(Path(f"{out}.corrupt"))
    assert [(m["line"], m["text"]) for m in moved] == [
        (6, '{"id": "esconv/train/0#9", "tar'),
        (11, "[1, 2]"),
    ]
    assert "not JSON" in moved[0]["reason"] and "not an object" in moved[1]["reason"]


class Truncating:
    """A teacher that always stops at the length limit (finish_reason "length")."""

    def generate(self, requests):
        return [Generation(chain("Question"), 10, 10, "length", 0.0) for _ in requests]


def test_truncated_teacher_outputs_are_rejected_and_dropped_examples_not_retried(
    tmp_path, examples
):
    out = tmp_path / "t.jsonl"
    cfg = EnrichConfig(mode="teacher", out=str(out), max_retries=1)
    stats = enrich(cfg, backend=Truncating(), examples=examples[:3])
    # the chain itself would pass; that it was cut at max_new_tokens rejects it
    assert stats["rejections"] == {"truncated": 6} and stats["dropped"] == 3
    dropped = read(Path(f"{out}.dropped.jsonl"))
    assert [d["id"] for d in dropped] == [
        f"{ex.dialogue_id}#{ex.turn_index}" for ex in examples[:3]
    ]
    assert dropped[0]["reasons"] == {"truncated": 2} and dropped[0]["attempts"] == 2
    assert dropped[0]["teacher"] == "deepseek-reasoner" and dropped[0]["seed"] == 0

    class Good:
        calls = 0

        def generate(self, requests):
            Good.calls += len(requests)
            return [
                Generation(chain(ex.strategy), 10, 10, "stop", 0.0)
                for ex in examples[: len(requests)]
            ]

    again = enrich(cfg, backend=Good(), examples=examples[:3])
    assert Good.calls == 0 and again["skipped_dropped"] == 3 and again["generated"] == 0
    retry = EnrichConfig(mode="teacher", out=str(out), max_retries=1, retry_dropped=True)
    retried = enrich(retry, backend=Good(), examples=examples[:3])
    assert Good.calls == 3 and retried["generated"] == 3
    totals = json.loads(Path(f"{out}.stats.json").read_text())
    assert (totals["generated"], totals["dropped"], totals["dropped_pending"]) == (3, 3, 0)
    assert totals["rejections"] == {"truncated": 6} and len(totals["runs"]) == 3


def test_stats_accumulate_across_runs(tmp_path, examples):
    out = tmp_path / "care.jsonl"
    enrich(EnrichConfig(out=str(out), limit=10), examples=examples[:10])
    enrich(EnrichConfig(out=str(out)), examples=examples)
    stats = json.loads(Path(f"{out}.stats.json").read_text())
    assert stats["generated"] == len(examples) == stats["records"]
    assert [r["generated"] for r in stats["runs"]] == [10, len(examples) - 10]
    assert [r["skipped_done"] for r in stats["runs"]] == [0, 10]
    assert stats["runs"][0]["config"]["limit"] == 10


def test_a_stats_file_from_before_runs_counts_as_one_run(tmp_path, examples):
    out = tmp_path / "care.jsonl"
    old = {"out": str(out), "mode": "offline", "generated": 7, "retried": 0, "dropped": 1,
           "skipped_done": 0, "rejections": {"wrong_strategy": 2}, "config": {}}  # fmt: skip
    Path(f"{out}.stats.json").write_text(json.dumps(old))
    enrich(EnrichConfig(out=str(out)), examples=examples[:4])
    stats = json.loads(Path(f"{out}.stats.json").read_text())
    assert (stats["generated"], stats["dropped"]) == (11, 1)
    assert stats["rejections"] == {"wrong_strategy": 2} and len(stats["runs"]) == 2


def test_a_resume_with_another_seed_template_or_teacher_stops_unless_forced(tmp_path, examples):
    from training.enrich_resume import ResumeError

    out = tmp_path / "care.jsonl"
    enrich(EnrichConfig(out=str(out), seed=0), examples=examples[:5])
    with pytest.raises(ResumeError, match=r"seed=1.*5 record\(s\) with teacher='offline'.*seed=0"):
        enrich(EnrichConfig(out=str(out), seed=1), examples=examples)
    assert len(read(out)) == 5  # nothing written
    teacher = EnrichConfig(mode="teacher", out=str(out), teacher_model="deepseek-reasoner")
    with pytest.raises(ResumeError, match=r"teacher='deepseek-reasoner', template='care_chain_v1'"):
        enrich(teacher, backend=Truncating(), examples=examples)
    forced = enrich(EnrichConfig(out=str(out), seed=1, force=True), examples=examples)
    assert forced["generated"] == len(examples) - 5
    assert {r["provenance"]["seed"] for r in read(out)} == {0, 1}


def test_teacher_model_must_suit_the_endpoint_and_the_key_comes_from_the_environment(
    monkeypatch,
):
    from training.teacher import check_teacher_endpoint

    api = '{"base_url": "https://api.deepseek.com/v1"}'
    with pytest.raises(ValueError, match="deepseek-reasoner"):
        EnrichConfig(mode="teacher", teacher_model="deepseek-ai/DeepSeek-R1", backend_settings=api)
    check_teacher_endpoint("deepseek-ai/DeepSeek-R1", "http://127.0.0.1:8000/v1")  # local vLLM
    cfg = EnrichConfig(mode="teacher", backend_settings=api, api_key_env="TEST_TEACHER_KEY")
    monkeypatch.delenv("TEST_TEACHER_KEY", raising=False)
    with pytest.raises(ValueError, match=r"api_key_env: \$TEST_TEACHER_KEY is not set"):
        cfg.backend_options()
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    assert cfg.backend_options()["api_key"] == "sk-test"


def test_resume_flags_parse_from_the_command_line():
    from trl import TrlParser

    (cfg,) = TrlParser((EnrichConfig,)).parse_args_and_config(
        args=["--config", str(RECIPES / "enrich_offline.yaml"), "--force", "--retry_dropped",
              "true"]
    )  # fmt: skip
    assert cfg.force is True and cfg.retry_dropped is True
