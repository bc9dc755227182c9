"""The main job, small: `manage.py demo --fast --contexts 5`, then an annotator and a researcher
use the running site in the browser. Nothing is mocked: tiny models are trained, responses come
from vLLM through a real Celery worker on the embedded broker."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pairwise.services.datasheet import incomplete_fields

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_demo(var: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "EVALSITE_VAR_DIR": str(var),
        "EVALSITE_MODELS_DIR": str(REPO / "var" / "test-cache" / "models"),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    cmd = [
        sys.executable,
        "manage.py",
        "demo",
        "--fast",
        "--contexts",
        "5",
        "--size",
        "xs",
        "--port",
        str(port),
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError(f"no {marker!r} within {timeout}s; output:\n{''.join(out)[-4000:]}")


def _login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_demo_runs_the_whole_study_and_serves_it(page, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run_demo(tmp_path, port)
    try:
        output = _read_until(proc, "Ctrl-C stops the server", timeout=1500)
        for step in range(1, 10):
            assert f"[{step}/9]" in output
        assert "bundled fixture" in output  # AugESC and ExTES files are not on this machine
        passwords = dict(re.findall(r"^\s+(\w+)\s+\w+\s+(\S+)$", output, re.M))
        study_id = re.search(r"Study (\d+):", output).group(1)
        items = int(re.search(r"(\d+) blind items", output).group(1))
        assert items > 0

        # an annotator judges every item, with the keyboard
        _login(page, base, "annotator1", passwords["annotator1"])
        page.goto(f"{base}/study/{study_id}/annotate/")
        judged = 0
        while page.locator("#judge-form").count():
            assert f"Item {judged + 1} of {items}" in page.content()
            for _ in range(5):
                page.keyboard.press("1")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            judged += 1
            assert judged <= items
        assert judged == items
        assert "All done" in page.content()

        # a researcher opens the results and downloads the export
        page.context.clear_cookies()
        _login(page, base, "researcher", passwords["researcher"])
        page.goto(f"{base}/studies/{study_id}/results/")
        assert page.locator("#preference-table tbody tr").count() >= 3 * 5
        with page.expect_download() as download:
            page.click("#export-csv")
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        names = {Path(n).name for n in archive.namelist()}
        assert {"judgments.csv", "items.csv", "summary.json", "table.md", "table.tex"} <= names
        # the demo study's datasheet is complete but for what the platform cannot know
        datasheet = json.loads(
            archive.read(next(n for n in archive.namelist() if n.endswith("datasheet.json")))
        )
        assert datasheet["sample"]["n_items"] == items
        assert incomplete_fields(datasheet) == ["ethics.approval", "ethics.preregistration"]
        rows = archive.read(next(n for n in archive.namelist() if n.endswith("judgments.csv")))
        assert rows.decode().count("\n") == 1 + items * 5
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, rest[-2000:]
    assert "stopping" in rest
    with socket.socket() as s:  # the web server is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0

    # running it again resumes: nothing is trained or generated twice, and it is quick
    started = time.monotonic()
    again = _run_demo(tmp_path, port, "--no-serve")
    text = again.communicate(timeout=600)[0]
    assert again.returncode == 0, text[-3000:]
    assert text.count("cached in") == 5 and "0 new" in text and "exists" in text
    assert f"{items} blind items" in text
    assert time.monotonic() - started < 120
