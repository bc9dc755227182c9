"""A researcher reads the results page and downloads the export."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import expect

from pairwise.services import allocation
from tests.e2e.conftest import login, make_blind_study
from tests.factories import annotator, researcher

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _judge_everything(study, users) -> int:
    """Each annotator judges every item they are handed, alternating preferences."""
    n = 0
    for u, user in enumerate(users):
        while (item := allocation.next_item(study, user)) is not None:
            side = ("left", "right", "left", "tie")[(n + u) % 4]
            choices = {c: side for c in study.criteria}
            allocation.submit(study, user, item.public_id, choices, client_seconds=12.0 + n)
            n += 1
    return n


def test_researcher_sees_results_and_downloads_the_export(
    live_server, page, tmp_path, screenshot_dir
):
    study, _, _ = make_blind_study(n_contexts=4, k=3)
    n_judgments = _judge_everything(study, [annotator(username=f"rater{i}") for i in range(3)])
    assert n_judgments == 12
    researcher(study, username="rita")  # a member: researchers reach their own studies

    login(page, live_server, "rita")
    expect(page.get_by_role("heading", name="Studies")).to_be_visible()
    page.get_by_role("link", name="Results").first.click()
    expect(page.get_by_role("heading", name=f"Results: {study.name}")).to_be_visible()

    table = page.locator("#preference-table")
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    assert rows.count() == len(study.criteria)  # one comparison x each criterion
    expect(rows.first).to_contain_text("ZZSECRETSYSTEM")  # researchers do see system names
    # The plots are SVG images (data: URIs): the Content-Security-Policy allows no style
    # attribute in the page, and matplotlib styles every shape with one.
    expect(page.locator(".plot img")).to_have_count(2)
    for plot in page.locator(".plot img").all():
        assert plot.evaluate("img => img.complete && img.naturalWidth > 0"), "plot not drawn"
        box = plot.bounding_box()
        assert box["width"] > 100 and box["height"] > 50
    expect(page.locator("#agreement-table tbody tr")).to_have_count(len(study.criteria))
    page.screenshot(path=screenshot_dir / "results.png", full_page=True)

    with page.expect_download() as info:
        page.locator("#export-csv").click()
    download = info.value
    assert download.suggested_filename == f"study-{study.pk}-csv.zip"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with zipfile.ZipFile(path) as zf:
        names = {n.split("/")[-1] for n in zf.namelist()}
        assert {"judgments.csv", "items.csv", "summary.json", "table.md", "table.tex"} <= names
        judgments_csv = next(n for n in zf.namelist() if n.endswith("judgments.csv"))
        lines = zf.read(judgments_csv).decode().strip().splitlines()
    # Long format: one row per judgment and criterion, plus the header.
    assert len(lines) == 1 + n_judgments * len(study.criteria)
