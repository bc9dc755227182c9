"""Exports and imports through the same long format; real outside data (PandaLM) round-trips."""

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from pairwise.models import Judgment, Response, Study
from pairwise.services import allocation
from pairwise.services.export import (
    comparison_availability,
    export_study,
    long_dataframe,
    study_summary,
)
from pairwise.services.items import build_items
from pairwise.services.sampling import sampling_key
from tests.factories import annotator, make_study, researcher

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("counters_agree")]
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
                study, user, item.public_id, {c: choice for c in study.criteria}, client_seconds=12
            )
    return study


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_writes_every_file_and_reimports_to_the_same_numbers(tmp_path, fmt):
    study = _judged_study()
    files = {p.name for p in export_study(study, fmt, tmp_path)}
    assert files == {
        f"judgments.{fmt}",
        f"items.{fmt}",
        f"itt.{fmt}",
        f"repeats.{fmt}",  # intra-annotator repeats (empty here: repeat_share 0)
        f"criteria.{fmt}",  # every version of every criterion, with its definition
        f"guidelines.{fmt}",  # every version of the guidelines, by hash
        f"annotators.{fmt}",  # who judged: participant id and evaluator profile
        "summary.json",
        "table.md",
        "table.tex",
        "datasheet.json",
        "datasheet.md",
        "datasheet.tex",
    }
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
    # every reply was eligible: ITT = per-protocol
    assert all(r["win_rate"] == r["win_rate_per_protocol"] for r in summary["itt"])
    # imported placeholder replies say nothing about unusable ones: availability unknown, no ITT
    assert again["itt"] == [] and len(again["availability"]) == 2
    assert all(not a["known"] and a["n_contexts"] is None for a in again["availability"])
    assert "imported" in again["availability"][0]["note"]


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
    client.force_login(researcher(study, username="exp-res"))
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
    client.force_login(researcher(study, username="pandalm-res"))  # imported: no members yet
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


# Replies per context (0..5) for CARE (A), ESConv and ExTES: "ok", "unusable", "truncated" or
# None (never generated). CARE vs ESConv: ctx 0 only A unusable, 1 both, 2 and 3 only B, 4 and 5
# both eligible. CARE vs ExTES: 0 and 1 only A, 3 only B, 2, 4, 5 both eligible.
REPLIES = {
    "CARE": ["unusable", "truncated", "ok", "ok", "ok", "ok"],
    "ESConv": ["ok", None, "unusable", None, "ok", "ok"],
    "ExTES": ["ok", "ok", "ok", "truncated", "ok", "ok"],
}


def _study_with_failures(k: int = 2):
    study, checkpoints, contexts = make_study(
        n_contexts=6, systems=tuple(REPLIES), k=k, with_responses=False
    )
    key = sampling_key(study.sampling)
    for ck in checkpoints:
        for ctx, state in zip(contexts, REPLIES[ck.system.name], strict=True):
            if state is not None:
                Response.objects.create(
                    checkpoint=ck,
                    context=ctx,
                    sampling_key=key,
                    text=f"That sounds hard; tell me more ({ck.pk}.{ctx.pk}).",
                    parse_status=Response.ParseStatus.NO_REASONING,
                    usable=state != "unusable",
                    truncated=state == "truncated",
                )
    assert build_items(study) == 2 + 3
    for i in range(k):
        user = annotator(username=f"itt{i}")
        while (item := allocation.next_item(study, user)) is not None:
            choice = "left" if item.a_on_left else "right"  # always prefer CARE
            allocation.submit(study, user, item.public_id, {c: choice for c in study.criteria})
    return study, checkpoints


def _counts(availability) -> dict:
    return {
        a.system_b.split(" v")[0]: (
            a.n_contexts,
            a.both_eligible,
            a.with_item,
            a.only_a_unusable,
            a.only_b_unusable,
            a.both_unusable,
        )
        for a in availability
    }


def test_availability_counts_unusable_truncated_and_missing_replies():
    study, checkpoints = _study_with_failures()
    labels = [c.label for c in checkpoints]
    availability = comparison_availability(study)
    assert [a.comparison for a in availability] == [
        f"{labels[0]} vs {labels[1]}",
        f"{labels[0]} vs {labels[2]}",
    ]  # the long format's comparison labels
    assert _counts(availability) == {"ESConv": (6, 2, 2, 1, 2, 1), "ExTES": (6, 3, 3, 2, 1, 0)}
    assert _counts(comparison_availability(study, checkpoint=str(checkpoints[2].pk))) == {
        "ExTES": (6, 3, 3, 2, 1, 0)
    }
    # allowing truncated replies makes ctx 1 (CARE) and ctx 3 (ExTES) eligible: no item yet
    study.allow_truncated = True
    study.save()
    assert _counts(comparison_availability(study)) == {
        "ESConv": (6, 2, 2, 1, 3, 0),
        "ExTES": (6, 5, 3, 1, 0, 0),
    }


def _itt_overall(rows: list[dict], comparison: str) -> dict:
    found = [
        r
        for r in rows
        if r["comparison"] == comparison
        and r["criterion"] == "Overall"
        and r["unit"] == "judgments"
        and r["denominator"] == "all"
    ]
    assert len(found) == 1, found
    return found[0]


def test_itt_beside_per_protocol_in_summary_page_api_and_every_export(tmp_path):
    study, checkpoints = _study_with_failures(k=2)
    comparison = f"{checkpoints[0].label} vs {checkpoints[1].label}"
    summary = study_summary(study, n_boot=50)
    r = _itt_overall(summary["itt"], comparison)
    # per-protocol: 2 items x 2 judgments, all won by CARE; virtual (k = 2 per context):
    # ctx 2 and 3 won by CARE, ctx 0 won by ESConv, ctx 1 a tie
    assert (r["n_per_protocol"], r["win_rate_per_protocol"]) == (4, 1.0)
    assert (r["n"], r["wins"], r["ties"], r["losses"]) == (12, 8, 2, 2)
    assert r["win_rate"] == pytest.approx(8 / 12)
    assert summary["meta"]["itt_k"] == 2 and "virtual" in summary["meta"]["itt_rule"]
    other = _itt_overall(summary["itt"], f"{checkpoints[0].label} vs {checkpoints[2].label}")
    assert (other["n"], other["wins"], other["losses"]) == (12, 8, 4)  # 6 + 2 won, 2 x 2 lost

    client = Client()
    client.force_login(researcher(study, username="itt-res"))
    api = client.get(f"/api/studies/{study.pk}/results/").json()
    assert _itt_overall(api["itt"], comparison)["win_rate"] == pytest.approx(8 / 12)
    assert api["availability"][0]["only_a_unusable"] == 1
    page = client.get(f"/studies/{study.pk}/results/").content.decode()
    assert 'id="itt-table"' in page and 'id="availability-table"' in page
    itt_table = page.split('id="itt-table"')[1].split("</table>")[0]
    assert "66.7" in itt_table and "100.0" in itt_table  # ITT beside per-protocol
    assert "4 / 2 / 2" in itt_table  # virtual judgments: A won / tie / B won

    for fmt, read in (("csv", pd.read_csv), ("json", pd.read_json), ("parquet", pd.read_parquet)):
        out = tmp_path / fmt
        export_study(study, fmt, out)
        table = read(out / f"itt.{fmt}")
        assert len(table) == len(summary["itt"]) == 2 * 5 * 2 * 2  # comp x crit x unit x denom
        got = table[
            (table["comparison"] == comparison)
            & (table["criterion"] == "Overall")
            & (table["unit"] == "judgments")
            & (table["denominator"] == "all")
        ].iloc[0]
        assert (got["n"], got["wins"], got["n_per_protocol"]) == (12, 8, 4)
        assert got["contexts_both_unusable"] == 1
        exported = json.loads((out / "summary.json").read_text())
        assert _itt_overall(exported["itt"], comparison)["wins"] == 8
        assert exported["availability"][0]["both_eligible"] == 2


def test_itt_before_the_first_judgment():
    study, _, _ = make_study(n_contexts=3, systems=("CARE", "ESConv"), with_responses=False)
    summary = study_summary(study)
    assert summary["empty"] and summary["availability"][0]["both_unusable"] == 3
    assert {r["ties"] for r in summary["itt"] if r["unit"] == "judgments"} == {9}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_client_seconds_and_prior_exposures_round_trip(tmp_path, fmt):
    study = _judged_study()
    judgments = list(Judgment.objects.filter(item__study=study).order_by("pk"))
    for i, j in enumerate(judgments):
        j.client_seconds = None if i % 3 == 0 else 2.5 + i
        j.prior_exposures = i % 3
    Judgment.objects.bulk_update(judgments, ["client_seconds", "prior_exposures"])
    want = {
        (j.item.public_id, j.annotator.username): (j.client_seconds, j.prior_exposures)
        for j in judgments
    }
    df = long_dataframe(study)
    assert {"client_seconds", "prior_exposures"} <= set(df.columns)
    assert df["client_seconds"].isna().sum() == len(df) // 3  # judgments 0, 3, 6, ...
    assert df["seconds"].notna().all()  # the server's time stays a column of its own
    export_study(study, fmt, tmp_path)

    Study.objects.filter(pk=study.pk).update(name="original")
    call_command("import_judgments", str(tmp_path / f"judgments.{fmt}"))
    imported = Study.objects.get(name=study.name)
    got = {
        (j.item.public_id.split("-", 1)[1], j.annotator.username.rsplit(":", 1)[1]): (
            j.client_seconds,
            j.prior_exposures,
        )
        for j in Judgment.objects.filter(item__study=imported).select_related("item", "annotator")
    }
    assert got == want


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped_and_read_back(tmp_path):
    """OWASP's CSV injection rule: a text cell beginning with = + - @ tab or CR gets a leading
    single quote; the platform's own import takes it off again."""
    import csv

    from pairwise.models import System
    from pairwise.services.imports import import_judgments
    from pairwise.services.longformat import read_long

    study, _, _ = make_study(n_contexts=2, systems=("=HYPERLINK(x)", "@SUM(A1)"), k=1)
    Response.objects.filter(checkpoint__system__name="=HYPERLINK(x)").update(
        text="-2+3 reasons to rest\t(really)"
    )
    user = annotator(username="csv-ann")
    while (item := allocation.next_item(study, user)) is not None:
        allocation.submit(study, user, item.public_id, {c: "left" for c in study.criteria})
    export_study(study, "csv", tmp_path)
    for name in ("judgments.csv", "items.csv"):
        with open(tmp_path / name, newline="", encoding="utf-8") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], name
    items = pd.read_csv(tmp_path / "items.csv", dtype=str, keep_default_na=False)
    assert set(items["response_a"]) == {"'-2+3 reasons to rest\t(really)"}
    assert items["system_a"].str.startswith("'=HYPERLINK").all()
    again = read_long(tmp_path / "judgments.csv")  # the quote comes off
    assert again["system_a"].str.startswith("=HYPERLINK(x) v").all()
    assert again["system_b"].str.startswith("@SUM(A1) v").all()
    Study.objects.filter(pk=study.pk).update(name="csv-original")
    assert import_judgments(tmp_path / "judgments.csv")["judgments"] == 2
    assert System.objects.filter(name__startswith="=HYPERLINK(x) v").exists()


def test_reimporting_long_item_ids_finds_the_same_items(tmp_path):
    """Item ids longer than the column were cut to 32 characters when written but looked up
    whole: a second import made new items, and two ids with one long prefix collided."""
    from pairwise.models import ComparisonItem
    from pairwise.services.imports import import_judgments

    prefix = "an-outside-tool-item-id-that-goes-on-and-on-"
    rows = [
        {
            "study": "long ids",
            "item_id": f"{prefix}{n}",
            "comparison": "X vs Y",
            "system_a": "X",
            "system_b": "Y",
            "a_side": "left",
            "annotator": annotator_name,
            "criterion": "Overall",
            "choice": "left",
        }
        for n in (1, 2)
        for annotator_name in ("a1", "a2")
    ]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    first = import_judgments(path)
    assert first["judgments"] == 4
    study = Study.objects.get(name="long ids")
    assert ComparisonItem.objects.filter(study=study).count() == 2  # no collision
    again = import_judgments(path)
    assert again["judgments"] == 0  # nothing new: the same items were found
    assert ComparisonItem.objects.filter(study=study).count() == 2
    assert all(len(i.public_id) <= 32 for i in ComparisonItem.objects.filter(study=study))


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_comments_and_cannot_judge_reasons_are_exported_and_imported(tmp_path, fmt):
    """They were collected from annotators but never left the database."""
    from pairwise.services.imports import import_judgments
    from pairwise.services.longformat import read_long

    study, _, _ = make_study(n_contexts=2, k=1)
    user = annotator(username="says-why")
    first = allocation.next_item(study, user)
    allocation.submit(
        study, user, first.public_id, {c: "left" for c in study.criteria}, comment="=A reply, kind"
    )
    second = allocation.next_item(study, user)
    allocation.submit(
        study, user, second.public_id, {}, cannot_judge=True, cannot_judge_reason="Both are empty"
    )
    export_study(study, fmt, tmp_path)
    exported = read_long(tmp_path / f"judgments.{fmt}")
    by_item = exported.groupby("item_id").first()
    assert by_item.loc[first.public_id, "comment"] == "=A reply, kind"
    assert by_item.loc[second.public_id, "cannot_judge_reason"] == "Both are empty"
    Study.objects.filter(pk=study.pk).update(name=f"original-{fmt}")
    import_judgments(tmp_path / f"judgments.{fmt}")
    imported = Judgment.objects.filter(imported=True)
    assert set(imported.values_list("comment", flat=True)) == {"=A reply, kind", ""}
    assert set(imported.values_list("cannot_judge_reason", flat=True)) == {"Both are empty", ""}
