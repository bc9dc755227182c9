"""Management commands: import_contexts, register_checkpoint, invite_annotators, requeue."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from pairwise.models import Checkpoint, EvalContext
from training.lineage import write_lineage

pytestmark = pytest.mark.django_db
ESCONV = Path(settings.EVALSITE_DATA_DIR) / "esconv" / "test.jsonl"


IMPORT_20 = ["import_contexts", "--dataset", "esconv", "--split", "test", "--n", "20"]
IMPORT_20 += ["--seed", "13", "--window", "6"]


@pytest.mark.skipif(not ESCONV.exists(), reason=f"ESConv not at {ESCONV}")
def test_import_contexts_is_idempotent_and_matches_the_dataset(capsys):
    call_command(*IMPORT_20)
    assert EvalContext.objects.count() == 20
    first = list(EvalContext.objects.order_by("pk").values_list("dialogue_id", "turn_index"))
    call_command(*IMPORT_20)
    assert "0 new, 20 already present" in capsys.readouterr().out
    assert (
        list(EvalContext.objects.order_by("pk").values_list("dialogue_id", "turn_index")) == first
    )
    ctx = EvalContext.objects.first()
    assert 1 <= len(ctx.history) <= 6 and ctx.gold_response and ctx.gold_strategy
    assert ctx.dialogue_id.startswith("esconv/test/")
    assert len({c.dialogue_id for c in EvalContext.objects.all()}) == 20  # varied dialogues
    # the gold response is the supporter's real next turn
    line = int(ctx.dialogue_id.rsplit("/", 1)[1])
    record = json.loads(ESCONV.read_text().splitlines()[line])
    assert record["dialog"][ctx.turn_index]["text"] == ctx.gold_response


def test_import_contexts_bad_input_changes_nothing(tmp_path):
    with pytest.raises(CommandError, match="EVALSITE_DATA_DIR"):
        call_command("import_contexts", "--data-dir", str(tmp_path), "--n", "5")
    bad = tmp_path / "esconv"
    bad.mkdir()
    (bad / "test.jsonl").write_text('{"dialog": [}\n')
    with pytest.raises(CommandError, match="line 1"):
        call_command("import_contexts", "--data-dir", str(tmp_path), "--n", "5")
    assert not EvalContext.objects.exists()


def _checkpoint_folder(root: Path, name: str, *, parent: Path | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_lineage(
        folder,
        system="CARE-SFT-RL",
        config={"DataArguments": {"window": 2, "care": True}},
        parent={"path": str(parent), "lineage_sha256": None} if parent else None,
        metrics={"train_loss": 1.5},
    )
    return folder


def test_register_checkpoint_reads_lineage_and_links_the_parent(tmp_path, capsys):
    first = _checkpoint_folder(tmp_path, "v1")
    second = _checkpoint_folder(tmp_path, "v2", parent=first)
    call_command("register_checkpoint", str(first))
    call_command("register_checkpoint", str(second))
    a, b = Checkpoint.objects.order_by("version")
    assert (a.label, b.label) == ("CARE-SFT-RL v1", "CARE-SFT-RL v2")
    assert b.parent == a and b.reasoning and b.metrics == {"train_loss": 1.5}
    assert b.backend_config == {"prompt_window": 2}  # prompted as it was trained
    assert "parent CARE-SFT-RL v1" in capsys.readouterr().out


def test_register_checkpoint_errors_register_nothing(tmp_path):
    with pytest.raises(CommandError, match="no checkpoint folder"):
        call_command("register_checkpoint", str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CommandError, match="config.json is unreadable"):
        call_command("register_checkpoint", str(broken))
    no_lineage = tmp_path / "nolineage"
    no_lineage.mkdir()
    (no_lineage / "config.json").write_text("{}")
    with pytest.raises(CommandError, match="lineage.json"):
        call_command("register_checkpoint", str(no_lineage))
    good = _checkpoint_folder(tmp_path, "good")
    call_command("register_checkpoint", str(good))
    with pytest.raises(CommandError, match="already registered"):
        call_command("register_checkpoint", str(good))
    other = _checkpoint_folder(tmp_path, "other")
    with pytest.raises(CommandError, match="v1 exists already"):
        call_command("register_checkpoint", str(other), "--as-version", "1")
    assert Checkpoint.objects.count() == 1


def test_registered_checkpoints_are_immutable(tmp_path):
    from django.core.exceptions import ValidationError

    call_command("register_checkpoint", str(_checkpoint_folder(tmp_path, "x")))
    checkpoint = Checkpoint.objects.get()
    checkpoint.path = "/elsewhere"
    with pytest.raises(ValidationError, match="immutable"):
        checkpoint.save()


def test_invite_annotators_prints_one_time_passwords(capsys):
    call_command("invite_annotators", "alice", "bob")
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [(n, r) for n, r, _ in lines] == [("alice", "annotator"), ("bob", "annotator")]
    user = get_user_model().objects.get(username="alice")
    assert user.check_password(lines[0][2])
    assert list(user.groups.values_list("name", flat=True)) == ["annotator"]
    call_command("invite_annotators", "alice")
    assert "exists" in capsys.readouterr().out
    assert user.check_password(lines[0][2])  # not reset without --reset


@pytest.mark.django_db(transaction=True)
def test_requeue_command_adds_only_new_work(capsys):
    from pairwise.models import Response
    from pairwise.services import studies
    from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory

    care = SystemFactory(name="CARE")
    v1 = CheckpointFactory(system=care, version=1, reasoning=True)
    base = CheckpointFactory(system=SystemFactory(name="ESConv"), version=1)
    study = studies.create_study(
        "rq", contexts=[EvalContextFactory() for _ in range(3)], pairs=[(v1, base)]
    )
    studies.open_study(study)
    assert Response.objects.count() == 6
    CheckpointFactory(system=care, version=2, reasoning=True, parent=v1)
    call_command("requeue", "rq", "--latest", "CARE")
    assert "CARE v2: 1 new comparisons, 1 generation batches" in capsys.readouterr().out
    assert Response.objects.count() == 9  # only v2 responses were generated
    assert study.items.count() == 6  # built as they arrived
    call_command("requeue", str(study.pk), "--latest", "CARE")
    assert "0 new comparisons, 0 generation batches, 0 new items" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no study"):
        call_command("requeue", "nope", "--latest", "CARE")
    with pytest.raises(CommandError, match="no checkpoint registered for 'Nope'"):
        call_command("requeue", "rq", "--latest", "Nope")


def _responses_file(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_import_responses_builds_items_and_splits_reasoning(tmp_path, capsys):
    from pairwise.models import Response
    from tests.factories import make_study

    study, (care, base), contexts = make_study(n_contexts=3, with_responses=False)
    chain = (
        "<think><context>c</context><cognition>b</cognition><emotion>e</emotion>"
        '<plan strategy="Question">p</plan></think>How are you feeling today?'
    )
    for ck, text in [(care, chain), (base, "That sounds hard.")]:
        f = _responses_file(
            tmp_path / f"{ck.pk}.jsonl", [{"context_id": c.pk, "text": text} for c in contexts]
        )
        call_command("import_responses", str(f), "--checkpoint", ck.label, "--study", study.name)
    out = capsys.readouterr().out
    assert "imported 3 responses" in out and "3 new items" in out
    r = Response.objects.filter(checkpoint=care).first()
    assert (r.text, r.parse_status, r.strategy) == (
        "How are you feeling today?",
        "complete",
        "Question",
    )
    assert "<plan" in r.reasoning and r.provenance["line"] >= 1
    assert study.items.count() == 3


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"context_id": 1, "text": "ok"', "{}"], "line 1, field '(line)': invalid JSON"),
        ([{"context_id": "x", "text": "ok"}], "line 1, field 'context_id'"),
        ([{"context_id": 0, "text": ""}], "line 1, field 'text'"),
        ([{"context_id": 0, "text": "a"}, {"context_id": 0, "text": "b"}], "also on line 1"),
        ([{"context_id": 987654, "text": "a"}], "no eval context with id 987654"),
    ],
)
def test_import_responses_errors_name_the_line_and_import_nothing(tmp_path, lines, message):
    from pairwise.models import Response
    from tests.factories import CheckpointFactory, EvalContextFactory

    ctx = EvalContextFactory()
    lines = [
        {**x, "context_id": ctx.pk} if isinstance(x, dict) and x.get("context_id") == 0 else x
        for x in lines
    ]
    ck = CheckpointFactory()
    good = {"context_id": EvalContextFactory().pk, "text": "fine"}
    f = _responses_file(tmp_path / "r.jsonl", [*lines, good])
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("import_responses", str(f), "--checkpoint", str(ck.pk))
    assert not Response.objects.exists()


@pytest.mark.skipif(not ESCONV.exists(), reason=f"ESConv not at {ESCONV}")
def test_import_contexts_skip_invalid_reports_what_it_left_out(tmp_path, capsys):
    lines = ESCONV.read_text().splitlines()
    folder = tmp_path / "esconv"
    folder.mkdir()
    bad = json.loads(lines[1])
    bad["dialog"][0]["speaker"] = "robot"
    (folder / "test.jsonl").write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    with pytest.raises(CommandError, match="robot"):
        call_command("import_contexts", "--data-dir", str(tmp_path), "--n", "2")
    assert not EvalContext.objects.exists()
    call_command("import_contexts", "--data-dir", str(tmp_path), "--n", "2", "--skip-invalid")
    out = capsys.readouterr().out
    assert "skipped 1 invalid records" in out and "2 contexts" in out
