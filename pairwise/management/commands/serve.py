"""Run the site: the embedded broker (by default), the Celery workers and beat, and the web server.

Ctrl-C stops them all cleanly. Running it again picks up where it stopped: the database holds
all pending work, and the worker's start-up reconcile re-enqueues it.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evalsite.embedded import (
    ProcessGroup,
    StartupError,
    celery_worker_argv,
    port_free,
    start_embedded_redis,
)
from pairwise.services import health


def start_services(
    group: ProcessGroup,
    *,
    host: str,
    port: int,
    web: bool = True,
    log_dir: Path | None = None,
    out=None,
) -> None:
    """Start broker (if embedded), workers, beat and web into `group`; raise StartupError."""
    say = out.write if out else lambda s: None
    if settings.BROKER_IS_EMBEDDED:
        proc = start_embedded_redis(settings.VAR_DIR, settings.EMBEDDED_REDIS_SOCKET)
        group.adopt("embedded broker", proc)
        say(
            f"broker: embedded redis on {settings.EMBEDDED_REDIS_SOCKET}"
            + (" (already running)" if proc is None else "")
            + "\n"
        )
    ok, detail = health.check_broker()
    if not ok:
        raise StartupError(
            f"CELERY_BROKER_URL: cannot reach {settings.CELERY_BROKER_URL} "
            f"({detail}); start the broker or fix the variable"
        )
    ok, detail = health.check_database()
    if not ok:
        raise StartupError(f"DATABASE_URL: cannot use the database ({detail})")
    if web and not port_free(host, port):
        raise StartupError(f"web: port {port} on {host} is taken; stop what uses it or pass --port")
    log_dir = log_dir or settings.VAR_DIR / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    group.start(
        "worker (default queue, beat)",
        celery_worker_argv(
            "default",
            "default",
            "-c",
            "2",
            "-B",
            "-s",
            str(settings.VAR_DIR / "celerybeat-schedule"),
        ),
        env=env,
        log=log_dir / "worker-default.log",
    )
    group.start(
        "worker (generation queue)",
        celery_worker_argv("generation", "generation", "--pool", "solo"),
        env=env,
        log=log_dir / "worker-generation.log",
    )
    say(f"workers: logs in {log_dir}\n")
    if web:
        group.start(
            "web server",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "evalsite.wsgi",
                "-b",
                f"{host}:{port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--access-logfile",
                str(log_dir / "access.log"),
                "--error-logfile",
                str(log_dir / "web.log"),
            ],
            env=env,
        )


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` stops the children instead of orphaning them."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def wait_until_healthy(timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    report = health.health()
    while not report["ok"] and time.monotonic() < deadline:
        time.sleep(0.5)
        report = health.health()
    return report


class Command(BaseCommand):
    help = "Run the web server, the Celery workers and beat, and the embedded broker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-web", action="store_true", help="workers (and broker) only")

    def handle(self, *args, **opts):
        stop_on_sigterm()
        group = ProcessGroup()
        try:
            start_services(
                group, host=opts["host"], port=opts["port"], web=not opts["no_web"], out=self.stdout
            )
            report = wait_until_healthy()
            if not report["ok"]:
                raise StartupError(f"health check failed: {report}")
            base = f"http://{opts['host']}:{opts['port']}"
            self.stdout.write(self.style.SUCCESS(f"ready: {base}/  (Ctrl-C stops everything)"))
            while (gone := group.first_exited()) is None:
                time.sleep(1)
            raise StartupError(f"{gone[0]} exited with status {gone[1]}; see var/log/")
        except StartupError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            group.stop()
