"""Run the site: the embedded broker (by default), the Celery workers and beat, and the web server.

`serve` supervises its children: one that dies (a worker killed by the OOM killer, say) is
restarted after 1 s, 2 s, 4 s ... (at most a minute) and the event is printed with the child's
exit status and log; the others keep running, and /healthz answers 503 while a worker is down.
After 5 crashes of one child within 10 minutes it stops everything, naming the child and its log.
Ctrl-C or SIGTERM stops every child, the broker last; a second signal does not cut that short.
Running it again picks up where it stopped: the database holds all pending work, and the
worker's start-up reconcile re-enqueues it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from evalsite.embedded import (
    Child,
    GaveUp,
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

        def embedded_broker():
            return start_embedded_redis(settings.VAR_DIR, settings.EMBEDDED_REDIS_SOCKET)

        proc = embedded_broker()
        group.adopt(
            "embedded broker", proc, respawn=embedded_broker, log=settings.VAR_DIR / "redis.log"
        )
        say(
            f"broker: embedded redis on {settings.EMBEDDED_REDIS_SOCKET}"
            + (" (already running)" if proc is None else f", pid {proc.pid}")
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
    if settings.BROKER_IS_EMBEDDED and settings.CACHE_URL == "locmemcache://":
        # the API's throttle counters, shared by the web processes (settings, Cache)
        env["CACHE_URL"] = settings.EMBEDDED_CACHE_URL

    def start(name: str, argv: list[str], log: Path) -> None:
        proc = group.start(name, argv, env=env, log=log)
        say(f"{name}: pid {proc.pid}, log {log}\n")

    start(
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
        log_dir / "worker-default.log",
    )
    start(
        "worker (generation queue)",
        celery_worker_argv("generation", "generation", "--pool", "solo"),
        log_dir / "worker-generation.log",
    )
    if web:
        start(
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
                "-",  # to web.log, as the process's output
            ],
            log_dir / "web.log",
        )


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` stops the children instead of orphaning them.

    Only the first SIGINT or SIGTERM interrupts; later ones are noted and ignored, so a second
    Ctrl-C cannot cut the shutdown short and orphan a child (the embedded Redis was)."""
    stopping = False

    def _interrupt(signum, frame):
        nonlocal stopping
        if stopping:
            print(f"{signal.Signals(signum).name} received: still stopping every child", flush=True)
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def wait_until_healthy(timeout: float = 60.0, *, since: datetime | None = None) -> dict:
    """Poll the health report (uncached) until it is ok; `since`: only heartbeats of workers
    started after it count (not rows left by an earlier run)."""
    deadline = time.monotonic() + timeout
    report = health.health(since=since)
    while not report["ok"] and time.monotonic() < deadline:
        time.sleep(0.5)
        report = health.health(since=since)
    return report


def forget_heartbeat(child: Child, proc: subprocess.Popen) -> None:
    """A worker that was killed cannot delete its heartbeat: do it, so /healthz says 503 now
    rather than when the row goes stale."""
    from pairwise.models import WorkerHeartbeat

    try:
        WorkerHeartbeat.objects.filter(
            pid=proc.pid, name__endswith=f"@{socket.gethostname()}"
        ).delete()
    except Exception as exc:  # the row goes stale anyway
        print(f"heartbeat of pid {proc.pid} not deleted ({exc})", flush=True)


class Command(BaseCommand):
    help = "Run the web server, the Celery workers and beat, and the embedded broker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-web", action="store_true", help="workers (and broker) only")

    def say(self, text: str) -> None:
        self.stdout.write(f"{timezone.localtime():%H:%M:%S} {text}")
        self.stdout.flush()

    def handle(self, *args, **opts):
        stop_on_sigterm()
        group = ProcessGroup(say=self.say, on_exit=forget_heartbeat)
        started = timezone.now()
        try:
            start_services(
                group, host=opts["host"], port=opts["port"], web=not opts["no_web"], out=self.stdout
            )
            report = wait_until_healthy(since=started)
            if not report["ok"]:
                raise StartupError(f"health check failed: {report}")
            base = f"http://{opts['host']}:{opts['port']}"
            self.stdout.write(self.style.SUCCESS(f"ready: {base}/  (Ctrl-C stops everything)"))
            self.stdout.flush()
            while True:
                group.supervise()
                time.sleep(0.5)
        except (StartupError, GaveUp) as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.say("stopping every child …")
        finally:
            group.stop()
            self.say("stopped")
