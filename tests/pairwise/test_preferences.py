"""Human preferences you can train on (issue 18, section 6): the rows (majority, margin, ties,
side mapping, exclusions), the export through the command, the zip and the API, and the whole
loop: judgments -> export -> DPO steps -> register_checkpoint -> requeue into the same study."""

from __future__ import annotations

import io
import json
import math
import zipfile

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from pairwise.models import GenerationBatch, Judgment
from pairwise.services.preferences import preference_rows
from tests.factories import annotator, make_study, researcher
from training.prompts import SYSTEM_PROMPT

PROMPT = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
ITEMS = {"i1": {"prompt": PROMPT, "text_a": "reply A", "text_b": "reply B"}}


def _long(*votes, item="i1", a_side="left", criterion="Overall", **extra):
    """Long-format rows for one item: `votes` are blinded choices, one annotator each."""
    return pd.DataFrame(
        [
            {
                "study": "s1",
                "item_id": item,
                "system_a": "CARE v1",
                "system_b": "ESConv v1",
                "checkpoint_a": "11",
                "checkpoint_b": "22",
                "a_side": a_side,
                "annotator": f"ann{n}",
                "criterion": criterion,
                "choice": choice,
                "is_gold": False,
                "simulated": False,
                **extra,
            }
            for n, choice in enumerate(votes)
        ]
    )


def test_majority_and_margin():
    (row,) = preference_rows(_long("left", "left", "right"), ITEMS)
    assert (row["chosen"], row["rejected"]) == ("reply A", "reply B")
    assert (row["checkpoint_chosen"], row["checkpoint_chosen_id"]) == ("CARE v1", 11)
    assert (row["checkpoint_rejected"], row["checkpoint_rejected_id"]) == ("ESConv v1", 22)
    assert row["margin"] == pytest.approx(2 / 3) and row["n_annotators"] == 3
    assert row["tie"] is False and row["prompt"] == PROMPT
    assert (row["study"], row["item"], row["criterion"]) == ("s1", "i1", "Overall")


def test_sides_map_back_to_a_and_b():
    # A was shown on the right: two "right" votes are votes for A
    (row,) = preference_rows(_long("right", "right", "left", a_side="right"), ITEMS)
    assert (row["chosen"], row["checkpoint_chosen"]) == ("reply A", "CARE v1")
    (row,) = preference_rows(_long("left", "left", a_side="right"), ITEMS)
    assert (row["chosen"], row["rejected"], row["checkpoint_chosen_id"]) == (
        "reply B",
        "reply A",
        22,
    )
    assert row["margin"] == 1.0


@pytest.mark.parametrize("votes", [("left", "right"), ("tie", "tie", "left"), ("tie",)])
def test_ties_are_left_out_unless_kept(votes):
    assert preference_rows(_long(*votes, a_side="right"), ITEMS) == []
    (row,) = preference_rows(_long(*votes, a_side="right"), ITEMS, keep_ties=True)
    # a kept tie is in A/B order, whatever the sides
    assert row["tie"] is True and (row["chosen"], row["rejected"]) == ("reply A", "reply B")
    assert row["n_annotators"] == len(votes)


def test_exclusions():
    gold = _long("left", "left", is_gold=True)
    assert preference_rows(gold, ITEMS) == []
    # cannot-judge votes neither count nor break the majority
    (row,) = preference_rows(_long("left", "cannot_judge", "cannot_judge"), ITEMS)
    assert row["n_annotators"] == 1 and row["margin"] == 1.0
    assert preference_rows(_long("cannot_judge"), ITEMS) == []
    # simulated judgments only when asked
    simulated = _long("left", "left", simulated=True)
    assert preference_rows(simulated, ITEMS) == []
    assert len(preference_rows(simulated, ITEMS, include_simulated=True)) == 1


def test_one_row_per_item_and_criterion():
    df = pd.concat(
        [
            _long("left", "left", criterion="Overall"),
            _long("right", "right", criterion="Fluency"),
            _long("left", item="i2"),
        ]
    )
    items = {**ITEMS, "i2": {"prompt": PROMPT, "text_a": "a2", "text_b": "b2"}}
    rows = preference_rows(df, items)
    assert [(r["item"], r["criterion"], r["chosen"]) for r in rows] == [
        ("i1", "Overall", "reply A"),
        ("i1", "Fluency", "reply B"),
        ("i2", "Overall", "a2"),
    ]


def test_doctests():
    # pyproject's testpaths do not list pairwise/services/preferences.py
    import doctest

    from pairwise.services import preferences

    result = doctest.testmod(preferences)
    assert result.attempted > 0 and result.failed == 0, result


# --- Through the site --------------------------------------------------------------------------


def _judge(study, votes_per_item, *, simulated=False):
    """One annotator per vote judges every non-gold item with that vote on all criteria: a
    blinded side ("left", "right" or "tie")."""
    items = list(study.items.filter(is_gold=False).order_by("pk"))
    for vote in votes_per_item:
        user = annotator(study)
        for item in items:
            Judgment.objects.create(
                item=item,
                annotator=user,
                choices={c: vote for c in study.criteria},
                seconds=12.0,
                simulated=simulated,
            )
    return items


@pytest.mark.django_db
def test_export_command_writes_loadable_preferences(tmp_path):
    from datasets import load_dataset

    study, (care, esconv), contexts = make_study(n_contexts=3, k=3, criteria=["Overall"])
    items = _judge(study, ["left", "left", "right"])
    _judge(study, ["right"] * 3, simulated=True)  # outvotes the humans, if it counted
    call_command("export_study", study.name, "--format", "preferences", "--out", str(tmp_path))
    data = load_dataset("json", data_files=str(tmp_path / "preferences.jsonl"), split="train")
    assert len(data) == 3
    by_item = {r["item"]: r for r in data}
    for item in items:
        row = by_item[item.public_id]
        left, right = (item.response_a, item.response_b)[:: 1 if item.a_on_left else -1]
        assert (row["chosen"], row["rejected"]) == (left.text, right.text)
        assert row["checkpoint_chosen"] == left.checkpoint.label
        assert row["n_annotators"] == 3 and row["margin"] == pytest.approx(2 / 3)
        assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert row["prompt"][-1] == {"role": "user", "content": "Not well, I can't sleep."}
        assert row["study"] == study.name

    call_command(
        "export_study",
        study.name,
        "--format",
        "preferences",
        "--include-simulated",
        "--out",
        str(tmp_path / "sim"),
    )
    rows = [
        json.loads(x) for x in (tmp_path / "sim" / "preferences.jsonl").read_text().splitlines()
    ]
    assert {r["n_annotators"] for r in rows} == {6}


@pytest.mark.django_db
@pytest.mark.parametrize("flag", ["--keep-ties", "--include-simulated"])
def test_preference_flags_need_the_preferences_format(tmp_path, flag):
    study, _, _ = make_study(n_contexts=1)
    with pytest.raises(CommandError, match=f"{flag}: only with --format preferences"):
        call_command("export_study", study.name, "--format", "csv", flag, "--out", str(tmp_path))


@pytest.mark.django_db
def test_page_and_api_offer_the_preferences_export(client):
    study, _, _ = make_study(n_contexts=2, k=2, criteria=["Overall"])
    _judge(study, ["tie", "tie"])
    client.force_login(researcher(study))
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert f"/studies/{study.pk}/export/preferences/" in page
    download = client.get(f"/studies/{study.pk}/export/preferences/")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as zf:
        assert zf.namelist() == [
            f"study-{study.pk}/{name}"
            for name in ("preferences.jsonl", "datasheet.json", "datasheet.md", "datasheet.tex")
        ]
        assert zf.read(f"study-{study.pk}/preferences.jsonl") == b""  # all tied
    api = client.get(f"/api/studies/{study.pk}/export/?fmt=preferences")
    assert api.status_code == 200


@pytest.mark.django_db
def test_judgments_export_dpo_register_requeue(tmp_path, tiny_model_dir):
    """The loop of issue 18: judgments -> preferences -> DPO -> register -> requeue."""
    from training import dpo
    from training.lineage import read_lineage

    study, (care, esconv), _ = make_study(n_contexts=4, k=2, criteria=["Overall"])
    _judge(study, ["left", "left"])
    call_command("export_study", study.name, "--format", "preferences", "--out", str(tmp_path))

    out = dpo.main(
        [
            "--config",
            "training/recipes/dpo_tiny.yaml",
            "--model_name_or_path",
            str(tiny_model_dir),
            "--preferences_file",
            str(tmp_path / "preferences.jsonl"),
            "--system_name",
            care.system.name,
            "--output_dir",
            str(tmp_path / "dpo"),
            "--max_steps",
            "2",
        ]
    )
    lineage = read_lineage(out)
    assert lineage["study"] == study.name and lineage["stage"] == "dpo"
    assert lineage["data"]["n_examples"] == 4 and lineage["metrics"]["global_step"] == 2
    assert math.isfinite(lineage["metrics"]["final_loss"])
    assert lineage["parent"]["path"] == str(tiny_model_dir.resolve())

    call_command("register_checkpoint", str(out), "--backend", "fake")
    new = care.system.checkpoints.order_by("-version").first()
    assert new.version == care.version + 1 and new.lineage["system"] == care.system.name

    call_command("requeue", study.name, "--latest", care.system.name)
    assert study.comparisons.filter(checkpoint_a=new, checkpoint_b=esconv).exists()
    batches = GenerationBatch.objects.filter(study=study, checkpoint=new, status="pending")
    assert sum(len(b.context_ids) for b in batches) == 4
