"""/healthz against real brokers and workers; bad configuration stops start-up in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import REPO, closed_port, site_app_on

pytestmark = pytest.mark.integration


def _healthz(client, settings, broker_url: str):
    settings.CELERY_BROKER_URL = broker_url
    with site_app_on(broker_url):
        started = time.monotonic()
        response = client.get("/healthz")
        return response, time.monotonic() - started


def test_healthy_with_a_worker(embedded_broker, workers, client, settings):
    worker = workers.start("health", embedded_broker.url)

    response, _ = _healthz(client, settings, embedded_broker.url)

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["ok"] is True
    assert report["database"] == {"ok": True, "detail": "postgresql"}
    assert report["broker"]["ok"] is True
    assert worker.nodename in report["worker"]["detail"]


def test_unhealthy_without_a_worker(embedded_broker, db, client, settings):
    response, _ = _healthz(client, settings, embedded_broker.url)

    assert response.status_code == 503
    report = response.json()
    assert report["ok"] is False
    assert report["database"]["ok"] is True
    assert report["broker"]["ok"] is True
    assert report["worker"] == {"ok": False, "detail": "no worker answered"}


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_unhealthy_when_the_broker_port_is_closed(scheme, db, client, settings):
    port = closed_port()
    url = {"redis": f"redis://127.0.0.1:{port}/0", "amqp": f"amqp://guest:guest@127.0.0.1:{port}//"}

    response, seconds = _healthz(client, settings, url[scheme])

    assert response.status_code == 503
    report = response.json()
    assert report["ok"] is False
    assert report["database"]["ok"] is True
    assert report["broker"]["ok"] is False
    assert "refused" in report["broker"]["detail"].lower()
    assert report["worker"] == {"ok": False, "detail": "broker unreachable"}
    assert seconds < 10, f"/healthz took {seconds:.1f}s with the broker down"


def _manage(
    *args: str, env: dict[str, str], var_dir, timeout: float = 60
) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, "EVALSITE_VAR_DIR": str(var_dir), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgres//postgres@127.0.0.1/test"),  # no "://"
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:notaport/test"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/test"),  # parses, but no driver here
        ("CELERY_BROKER_URL", "localhost:6379"),
        ("CELERY_BROKER_URL", "kafka://127.0.0.1:9092"),
    ],
)
def test_malformed_url_is_one_line_naming_the_variable(variable, value, tmp_path):
    done = _manage("check", env={variable: value}, var_dir=tmp_path)

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_serve_with_an_unreachable_broker_exits_naming_it(tmp_path):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    done = _manage(
        "serve",
        "--no-web",
        env={"CELERY_BROKER_URL": url, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        var_dir=tmp_path,
        timeout=60,
    )

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CELERY_BROKER_URL" in lines[0]
    assert url in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
