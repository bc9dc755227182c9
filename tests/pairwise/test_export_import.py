"""Exports and imports through the same long format; real outside data (PandaLM) round-trips."""

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from pairwise.models import Judgment, Study
from pairwise.services import allocation
from pairwise.services.export import export_study, long_dataframe, study_summary
from tests.factories import annotator, make_study, researcher

pytestmark = pytest.mark.django_db
PANDALM = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pandalm" / "testset-v1.json"
)


def _judged_study():
    study, _, _ = make_study(n_contexts=4, systems=("CARE", "ESConv", "ExTES"), k=3)
    for i in range(3):
        user = annotator(username=f"exp{i}")
        while (item := allocation.next_item(study, user)) is not None:
            choice = "left" if item.a_on_left else "right"  # always prefer CARE
            allocation.submit(
                study, user, item.public_id, {c: choice for c in study.criteria}, seconds=12
            )
    return study


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_writes_every_file_and_reimports_to_the_same_numbers(tmp_path, fmt):
    study = _judged_study()
    files = {p.name for p in export_study(study, fmt, tmp_path)}
    assert files == {f"judgments.{fmt}", f"items.{fmt}", "summary.json", "table.md", "table.tex"}
    long_df = long_dataframe(study)
    assert len(long_df) == 8 * 3 * 5  # items x annotators x criteria
    assert {"system_a", "checkpoint_a", "a_side", "choice", "outcome"} <= set(long_df.columns)
    assert set(long_df["outcome"]) == {"a"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    overall = [
        r
        for r in summary["preference"]
        if r["criterion"] == "Overall" and r["denominator"] == "all"
    ]
    assert all(r["win_rate"] == 1.0 and r["n"] == 12 for r in overall)
    table = (tmp_path / "table.md").read_text()
    assert "100.0" in table and "judgments" in table.lower()
    assert "\\begin{tabular}" in (tmp_path / "table.tex").read_text()

    Study.objects.filter(pk=study.pk).update(name="original")  # the import makes its own study
    call_command("import_judgments", str(tmp_path / f"judgments.{fmt}"))
    imported = Study.objects.get(name=study.name)
    again = study_summary(imported)
    assert again["n_judgments"] == summary["n_judgments"]
    assert [r["win_rate"] for r in again["preference"]] == [
        r["win_rate"] for r in summary["preference"]
    ]


def test_bad_import_row_names_line_and_field_and_imports_nothing(tmp_path):
    study = _judged_study()
    export_study(study, "csv", tmp_path)
    df = pd.read_csv(tmp_path / "judgments.csv", dtype=str)
    df.loc[5, "choice"] = "leftish"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    before = Judgment.objects.count()
    with pytest.raises(CommandError) as exc:
        call_command("import_judgments", str(bad))
    assert "line 7" in str(exc.value) and "choice" in str(exc.value)
    assert Judgment.objects.count() == before
    with pytest.raises(CommandError, match="no-such"):
        call_command("import_judgments", str(tmp_path / "no-such.csv"))


def test_export_download_from_the_site_and_api():
    study = _judged_study()
    client = Client()
    client.force_login(researcher(username="exp-res"))
    r = client.get(f"/studies/{study.pk}/export/csv/")
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))).namelist()
    assert f"study-{study.pk}/judgments.csv" in names
    r = client.get(f"/api/studies/{study.pk}/export/?fmt=parquet")
    assert r.status_code == 200
    assert client.get(f"/api/studies/{study.pk}/export/?fmt=xls").status_code == 400
    results = client.get(f"/api/studies/{study.pk}/results/").json()
    assert results["n_items"] == 8


def test_export_command_errors_clearly(tmp_path):
    with pytest.raises(CommandError, match="no study"):
        call_command("export_study", "999", "--out", str(tmp_path))


@pytest.mark.skipif(not PANDALM.exists(), reason=f"PandaLM data not at {PANDALM}")
def test_pandalm_imported_as_outside_data_reproduces_the_published_numbers():
    """PandaLM (ICLR 2024) README: Cohen's kappa 0.85 / 0.88 / 0.86; majority 105 / 422 / 472."""
    call_command("import_judgments", str(PANDALM), "--pandalm")
    study = Study.objects.get(name="pandalm-v1")
    assert study.items.count() == 999 and Judgment.objects.filter(item__study=study).count() == 2997
    summary = study_summary(study, n_boot=50)
    kappas = {
        (r["annotator_1"].rsplit(":", 1)[-1], r["annotator_2"].rsplit(":", 1)[-1]): round(
            r["cohen_kappa"], 2
        )
        for r in summary["pairwise_kappa"]
    }
    assert kappas == {
        ("annotator1", "annotator2"): 0.85,
        ("annotator1", "annotator3"): 0.88,
        ("annotator2", "annotator3"): 0.86,
    }
    items = [r for r in summary["preference_items"] if r["denominator"] == "all"]
    assert sum(r["ties"] for r in items) == 105
    assert sum(r["wins"] for r in items) == 422
    assert sum(r["losses"] for r in items) == 472
    # the study page shows it like any other study
    client = Client()
    client.force_login(researcher(username="pandalm-res"))
    page = client.get(f"/studies/{study.pk}/results/")
    assert page.status_code == 200 and "Fleiss" in page.content.decode()


def test_simulated_judgments_are_marked_in_the_export_and_separate_the_systems():
    from pairwise.services.simulate import simulate

    study, _, _ = make_study(n_contexts=60, systems=("CARE", "ESConv"), k=3)
    assert simulate(study, annotators=3, preference=0.75, tie_rate=0.0, agreement=0.95) == 180
    df = long_dataframe(study)
    assert df["simulated"].all() and df["annotator"].str.startswith("simulated-").all()
    summary = study_summary(study, n_boot=100)
    assert summary["simulated_judgments"] == len(df)
    overall = next(
        r
        for r in summary["preference"]
        if r["criterion"] == "Overall" and r["denominator"] == "all"
    )
    # expected: win rate ~0.74, Fleiss' kappa ~0.8; the margins hold for any item ids
    assert overall["win_rate"] > 0.6 and overall["sign_test_p"] < 0.001
    kappa = next(r for r in summary["agreement"] if r["criterion"] == "Overall")
    assert kappa["fleiss_kappa"] > 0.5
