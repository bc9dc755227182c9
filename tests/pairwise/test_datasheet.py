"""The evaluation datasheet (issue 18 section 2): filled from the study, in every export, through
the command, the API and the results page; only what the platform cannot know is left "to be
completed"; Markdown and LaTeX escape what researchers typed."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.management import call_command

from pairwise.models import DEFAULT_DEFINITIONS, Checkpoint, Criterion, Profile
from pairwise.outcomes import CHOICES
from pairwise.services import allocation, datasheet
from pairwise.services.export import FORMATS, export_study, study_summary
from tests.factories import annotator, make_study, researcher

pytestmark = pytest.mark.django_db

LINEAGE = {
    "system": "CARE",
    "config": {"model_name_or_path": "tiny-base", "learning_rate": 2e-5, "max_steps": 6},
    "data": {"files": {"esconv.json": "ab" * 32}, "examples_sha256": "cd" * 32},
    "parent": None,
    "git_commit": "0123abc",
    "metrics": {},
    "created_at": "2026-01-01T00:00:00+00:00",
    "generation": {"window": 8, "max_new_tokens": 48},
    "sha256": "ef" * 32,
}
SELECTION = {"source": "esconv/test", "n": 4, "seed": 13, "window": 8}
FILES = {"datasheet.json", "datasheet.md", "datasheet.tex"}


def _judged_study():
    """4 contexts x 2 comparisons, k = 3: three annotators who mostly prefer A, one of whom
    cannot judge one item; checkpoints with lineage, contexts with their selection."""
    study, checkpoints, contexts = make_study(
        n_contexts=4, systems=("CARE", "ESConv", "ExTES"), k=3, seed=4242, gold_share=0.0
    )
    Checkpoint.objects.filter(pk__in=[c.pk for c in checkpoints]).update(lineage=LINEAGE)
    for ctx in contexts:
        ctx.metadata = {"split": "test", "selection": SELECTION}
        ctx.save(update_fields=["metadata"])
    for i in range(3):
        user = annotator(study, username=f"ds{i}")
        n = 0
        while (item := allocation.next_item(study, user)) is not None:
            if i == 2 and n == 0:
                allocation.submit(
                    study, user, item.public_id, {}, cannot_judge=True,
                    cannot_judge_reason="both replies are cut off",
                )  # fmt: skip
            else:
                a_wins = (n + i) % 4 != 0
                choice = "left" if item.a_on_left == a_wins else "right"
                allocation.submit(
                    study, user, item.public_id, {c: choice for c in study.criteria},
                    client_seconds=12,
                )  # fmt: skip
            n += 1
    Profile.objects.update_or_create(
        user=user, defaults={"expertise": "PhD psychology", "paid": True}
    )
    return study


def test_required_keys_and_values_come_from_the_study():
    study = _judged_study()
    summary = study_summary(study, n_boot=50)
    ds = datasheet.build_datasheet(study, summary)
    assert set(datasheet.SECTIONS) <= set(ds)
    assert ds["sample"]["n_items"] == 8 and ds["sample"]["n_contexts"] == 4
    assert ds["sample"]["seed"] == 4242
    assert ds["sample"]["selection"]["draws"] == [SELECTION]
    assert ds["sample"]["selection"]["sources"] == {"esconv/test": 4}
    assert ds["evaluators"]["n"] == 3
    assert ds["design"]["overlap_k"] == 3
    assert ds["design"]["exposure"]["rule"] == "response"
    assert ds["design"]["quota_per_annotator"] == "no quota"
    assert [c["name"] for c in ds["criteria"]] == study.criteria
    assert [c["definition"] for c in ds["criteria"]] == [
        DEFAULT_DEFINITIONS[c] for c in study.criteria
    ]
    scale = ds["criteria"][0]["scale"]["values"]
    assert sorted(v["value"] for v in scale) == sorted(CHOICES)
    # systems: each checkpoint once, with its lineage
    assert sorted(s["label"] for s in ds["systems"]) == sorted(
        c.label for c in Checkpoint.objects.filter(system__name__in=["CARE", "ESConv", "ExTES"])
    )
    care = next(s for s in ds["systems"] if s["system"] == "CARE")
    assert care["role"] == "A" and care["lineage"]["base_model"] == "tiny-base"
    assert care["lineage"]["data_examples_sha256"] == "cd" * 32
    # results: agreement per criterion as summarize computed it, intra not measured
    inter = ds["results"]["agreement"]["inter"]
    assert [r["criterion"] for r in inter] == [r["criterion"] for r in summary["agreement"]]
    assert [r["fleiss_kappa"] for r in inter] == [r["fleiss_kappa"] for r in summary["agreement"]]
    assert ds["results"]["agreement"]["intra"] == "not measured (repeat_share 0)"
    tests = ds["results"]["tests"]
    assert tests["correction"] == "Holm" and len(tests["rows"]) == 2 * len(study.criteria)
    assert ds["results"]["denominators"]["rows"]  # ITT beside per-protocol


def test_quality_control_names_each_exclusion_and_its_reason():
    study = _judged_study()
    ds = datasheet.build_datasheet(study, study_summary(study, n_boot=20))
    qc = ds["quality_control"]
    by_what = {e["what"]: e for e in qc["exclusions"]}
    cannot = by_what["cannot_judge answers"]
    assert cannot["count"] == 1 and cannot["reasons"] == {"both replies are cut off": 1}
    assert by_what["simulated judgments"]["count"] == 0
    assert all(e["reason"] for e in qc["exclusions"])
    assert qc["too_fast_flags"]["rule"].startswith("median seconds per item")
    assert {r["annotator"] for r in qc["gold_pass_rates"]} == {"ds0", "ds1", "ds2"}


def test_profile_counts_of_the_evaluators():
    study = _judged_study()
    counts = datasheet.build_datasheet(study, study_summary(study, n_boot=20))["evaluators"]
    # services/evaluators.profile_counts over the three who judged
    assert counts["profile_counts"]["annotators"] == 3
    assert counts["profile_counts"]["expertise"] == {"PhD psychology": 1, "unknown": 2}
    assert counts["profile_counts"]["paid"] == {"unknown": 2, "yes": 1}


def test_only_unknowable_fields_are_to_be_completed():
    study = _judged_study()
    ds = datasheet.build_datasheet(study, study_summary(study, n_boot=20))
    assert set(datasheet.incomplete_fields(ds)) == {"ethics.approval", "ethics.preregistration"}

    # a checkpoint registered without lineage, a criterion nobody defined: the platform can't know
    Checkpoint.objects.filter(system__name="ExTES").update(lineage={})
    study.criteria = [*study.criteria, "Empathy"]
    study.save(update_fields=["criteria"])
    ds = datasheet.build_datasheet(study, study_summary(study, n_boot=20))
    extes = next(i for i, s in enumerate(ds["systems"]) if s["system"] == "ExTES")
    assert set(datasheet.incomplete_fields(ds)) == {
        "ethics.approval",
        "ethics.preregistration",
        f"systems[{extes}].lineage",
        f"criteria[{len(study.criteria) - 1}].definition",
    }


def test_markdown_and_latex_escape_a_criterion_definition():
    study = _judged_study()
    nasty = r"50% & $x_1$ {a} #1 \ ~ ^ | *bold* <b>x</b> [link](y)"
    Criterion.objects.create(study=study, name="Overall", definition=nasty, version=7)
    study.criteria_versions = {"Overall": 7}
    study.save(update_fields=["criteria_versions"])
    ds = datasheet.build_datasheet(study, study_summary(study, n_boot=20))
    overall = next(c for c in ds["criteria"] if c["name"] == "Overall")
    assert overall["definition"] == nasty and overall["version"] == 7

    tex = datasheet.render_latex(ds)
    assert (
        r"50\% \& \$x\_1\$ \{a\} \#1 \textbackslash{} \textasciitilde{} \textasciicircum{}" in tex
    )
    assert nasty not in tex
    md = datasheet.render_markdown(ds)
    assert r"50% & $x\_1$ {a} \#1 \\ ~ ^ \| \*bold\* &lt;b&gt;x&lt;/b&gt; \[link\](y)" in md
    # a table row per field: the escaped pipe never splits the cell
    row = next(line for line in md.splitlines() if "50%" in line)
    assert row.replace(r"\|", "").count("|") == 3


def test_command_writes_the_three_files(tmp_path):
    study = _judged_study()
    call_command("export_study", str(study.pk), "--format", "datasheet", "--out", str(tmp_path))
    assert {p.name for p in tmp_path.iterdir()} == FILES
    ds = json.loads((tmp_path / "datasheet.json").read_text())
    assert ds["sample"]["n_items"] == 8 and ds["evaluators"]["n"] == 3
    assert ds["criteria"][0]["definition"] == DEFAULT_DEFINITIONS[study.criteria[0]]
    assert "## Quality control" in (tmp_path / "datasheet.md").read_text()
    assert r"\begin{longtable}" in (tmp_path / "datasheet.tex").read_text()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "datasheet"])
def test_every_export_format_includes_the_datasheet(tmp_path, fmt):
    study, _, _ = make_study(n_contexts=2, k=1, criteria=["Overall"])
    names = {p.name for p in export_study(study, fmt, tmp_path)}
    assert FILES <= names
    assert {p.name for p in tmp_path.iterdir()} == names
    ds = json.loads((tmp_path / "datasheet.json").read_text())
    assert ds["evaluators"]["n"] == 0 and ds["results"]["note"] == "no judgments yet"


def test_api_returns_it_to_researchers_only(client):
    study = _judged_study()
    client.force_login(researcher(study, username="ds-res"))
    r = client.get(f"/api/studies/{study.pk}/datasheet/")
    assert r.status_code == 200
    body = r.json()
    assert body["sample"]["seed"] == study.seed and body["design"]["overlap_k"] == 3
    assert body["results"]["agreement"]["inter"]
    md = client.get(f"/api/studies/{study.pk}/datasheet/?fmt=md")
    assert md.status_code == 200 and md["Content-Type"].startswith("text/markdown")
    assert md.content.decode().startswith(f"# Evaluation datasheet: {study.name}")
    assert client.get(f"/api/studies/{study.pk}/datasheet/?fmt=pdf").json() == {
        "fmt": ["expected one of ['json', 'md']"]
    }
    client.force_login(annotator(study, username="ds-ann"))
    assert client.get(f"/api/studies/{study.pk}/datasheet/").status_code == 403


def test_results_page_shows_the_datasheet_and_its_download(client):
    study = _judged_study()
    client.force_login(researcher(study, username="ds-page"))
    page = client.get(f"/studies/{study.pk}/results/").content.decode()
    assert 'id="datasheet"' in page
    assert f"/studies/{study.pk}/export/datasheet/" in page
    # the two unknowable fields, named in the note and highlighted in the ethics row
    assert "marked <mark>to be completed</mark>: ethics.approval, ethics.preregistration" in page
    assert "<mark>approval</mark> <mark>preregistration</mark>" in page
    download = client.get(f"/studies/{study.pk}/export/datasheet/")
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as zf:
        assert sorted(zf.namelist()) == sorted(f"study-{study.pk}/{f}" for f in FILES)
    filtered = client.get(f"/studies/{study.pk}/results/?checkpoint=CARE").content.decode()
    assert "clear the checkpoint filter" in filtered


def test_intra_agreement_comes_from_the_repeats_when_there_are_any():
    study, _, _ = make_study(n_contexts=2, k=1, criteria=["Overall"], repeat_share=0.2)
    intra = datasheet.build_datasheet(study)["results"]["agreement"]["intra"]
    assert intra["repeat_share"] == 0.2 and intra["n_repeats"] == 0  # none answered yet
