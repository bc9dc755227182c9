"""Backing up and restoring the site's database (`manage.py backup`, `manage.py restore`).

SQLite: the online backup API (`sqlite3.Connection.backup`) copies the whole database in one
step under one read snapshot. In WAL mode (settings) readers do not block writers, so annotators
keep submitting while it runs, and the copy holds exactly the transactions committed when it
began. The file written is a plain SQLite database (rollback journal, no -wal beside it).
PostgreSQL: `pg_dump -Fc` and `pg_restore --clean --if-exists --single-transaction`, with the
connection settings of DATABASES (from DATABASE_URL).

A restore checks first that the file is a backup of the right kind (a SQLite database or a
pg_dump archive, matching the site's engine, holding this site's tables) and refuses to replace
a database that holds data unless told to (`force`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
# tables a backup of this site must hold
# how long a backup or restore waits for SQLite's locks before giving up
BUSY_SECONDS = 60
SITE_TABLES = ("django_migrations", "pairwise_study", "pairwise_judgment")
PG_ONE_LINERS = (
    'backup:  pg_dump -Fc -d "$DATABASE_URL" -f site.dump\n'
    'restore: pg_restore --clean --if-exists --no-owner --single-transaction -d "$DATABASE_URL" '
    "site.dump"
)


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message names the file and the problem."""


def engine(alias: str = DEFAULT_DB_ALIAS) -> str:
    """'sqlite' or 'postgresql'."""
    vendor = connections[alias].vendor
    if vendor not in ("sqlite", "postgresql"):
        raise BackupError(f"DATABASE_URL: backups support SQLite and PostgreSQL, not {vendor}")
    return vendor


# --- Backup ------------------------------------------------------------------------------------


def backup(out: str | Path, *, alias: str = DEFAULT_DB_ALIAS) -> dict:
    """Write a backup of the database to `out` (replaced only once the new one is complete).
    Returns what was written: engine, file, bytes, seconds."""
    out = Path(out).resolve()
    if out.is_dir():
        raise BackupError(f"--out: {out} is a folder; give a file name, e.g. {out / 'site.bak'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    kind = engine(alias)
    started = time.monotonic()
    try:
        if kind == "sqlite":
            _backup_sqlite(alias, partial)
        else:
            _backup_postgresql(alias, partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    result = {
        "engine": kind,
        "file": str(out),
        "bytes": out.stat().st_size,
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info("backup of the %s database written to %s", kind, out)
    return result


class _Deadline:
    """A backup progress callback that gives up when SQLite keeps answering busy or locked
    (Python's sqlite3 would otherwise retry forever)."""

    def __init__(self, seconds: float, what: str) -> None:
        self.end, self.seconds, self.what = time.monotonic() + seconds, seconds, what

    def __call__(self, status: int, remaining: int, total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > self.end:
            raise BackupError(f"{self.what}: the database stayed locked for {self.seconds:.0f} s")


def _backup_sqlite(alias: str, target: Path) -> None:
    conn = connections[alias]
    conn.ensure_connection()
    if conn.in_atomic_block:
        raise BackupError("backup: called inside a transaction; run it on its own")
    dest = sqlite3.connect(target)
    try:
        # pages=-1: one step under one read snapshot; stepwise copying restarts whenever another
        # connection writes, and under steady submissions might never finish
        conn.connection.backup(dest, pages=-1, progress=_Deadline(BUSY_SECONDS, "backup"))
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        problem = dest.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        dest.close()
    if problem != "ok":
        raise BackupError(f"{target}: the copy fails SQLite's quick_check ({problem})")


def _pg_command(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise BackupError(
            f"{program}: not found on PATH. Install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client, the server's major version or newer), "
            f"or run by hand:\n{PG_ONE_LINERS}"
        )
    return found


def _pg_connection(alias: str) -> tuple[list[str], dict]:
    """Arguments and environment for pg_dump/pg_restore from DATABASES (password in the
    environment, never on the command line)."""
    s = connections[alias].settings_dict
    args, env = [], dict(os.environ)
    for flag, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if s.get(key):
            args += [flag, str(s[key])]
    if s.get("PASSWORD"):
        env["PGPASSWORD"] = str(s["PASSWORD"])
    options = s.get("OPTIONS") or {}
    if options.get("sslmode"):
        env["PGSSLMODE"] = str(options["sslmode"])
    return [*args, "--no-password", "-d", s["NAME"]], env


def _run(args: list[str], env: dict, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _backup_postgresql(alias: str, target: Path) -> None:
    connection, env = _pg_connection(alias)
    _run([_pg_command("pg_dump"), "-Fc", "-f", str(target), *connection], env, "pg_dump")


# --- Checking a file ---------------------------------------------------------------------------


def backup_kind(path: str | Path) -> str:
    """'sqlite' or 'postgresql', from the file's first bytes; BackupError naming the problem
    for a missing or empty file or any other kind of file."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    if not head:
        raise BackupError(f"{path}: the file is empty")
    hint = " (a plain-SQL pg_dump: restore it with psql)" if head.startswith(b"--") else ""
    raise BackupError(
        f"{path}: not a backup: expected a SQLite database (starting 'SQLite format 3') "
        f"or a pg_dump custom archive (starting 'PGDMP'), found {head[:16]!r}{hint}"
    )


def check_backup(path: str | Path) -> str:
    """`backup_kind`, and that the file is a sound backup of this site (its tables are there,
    SQLite's quick_check passes, pg_restore can read the archive)."""
    path = Path(path)
    kind = backup_kind(path)
    (_check_sqlite_file if kind == "sqlite" else _check_pgdump_file)(path)
    return kind


def _check_sqlite_file(path: Path) -> None:
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: a damaged SQLite file ({exc})") from None
    missing = [t for t in SITE_TABLES if t not in tables]
    if missing:
        raise BackupError(
            f"{path}: a SQLite database, but not of this site: no table {', '.join(missing)}"
        )
    if problem != "ok":
        raise BackupError(f"{path}: the SQLite file fails quick_check ({problem})")


def _check_pgdump_file(path: Path) -> None:
    listing = _run(
        [_pg_command("pg_restore"), "--list", str(path)], dict(os.environ), f"{path}: pg_restore"
    )
    missing = [t for t in SITE_TABLES if f" TABLE public {t} " not in listing.stdout]
    if missing:
        raise BackupError(
            f"{path}: a pg_dump archive, but not of this site: no table {', '.join(missing)}"
        )


# --- Restore -----------------------------------------------------------------------------------


def database_contents(alias: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Rows in the tables a restore would replace: accounts, studies, judgments (empty dict for
    a database with no tables yet)."""
    conn = connections[alias]
    tables = set(conn.introspection.table_names())
    counts = {}
    with conn.cursor() as cursor:
        for label, table in (
            ("accounts", "auth_user"),
            ("studies", "pairwise_study"),
            ("judgments", "pairwise_judgment"),
        ):
            if table in tables:
                cursor.execute(f"SELECT COUNT(*) FROM {conn.ops.quote_name(table)}")
                counts[label] = cursor.fetchone()[0]
    return counts


def restore(path: str | Path, *, force: bool = False, alias: str = DEFAULT_DB_ALIAS) -> dict:
    """Replace the database with the backup at `path`. Without `force`, refuses when the
    database holds any account, study or judgment. Returns a report: what was restored, the
    migrations still to apply, and any item whose judgment_count disagrees with its judgments."""
    path = Path(path).resolve()
    kind = backup_kind(path)
    site = engine(alias)
    if kind != site:
        raise BackupError(
            f"{path}: a {kind} backup, but this site's database is {site} (DATABASE_URL); "
            f"restore it on a {kind} site"
        )
    check_backup(path)
    held = {k: v for k, v in database_contents(alias).items() if v}
    if held and not force:
        what = ", ".join(f"{v} {k}" for k, v in held.items())
        raise BackupError(
            f"the database holds data ({what}); restoring replaces all of it. "
            "Back it up first, then give --force"
        )
    started = time.monotonic()
    if kind == "sqlite":
        _restore_sqlite(alias, path)
    else:
        _restore_postgresql(alias, path)
    connections[alias].close()
    report = verify(alias)
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info("restored the %s database from %s", kind, path)
    return report


def _restore_sqlite(alias: str, path: Path) -> None:
    conn = connections[alias]
    conn.ensure_connection()
    if conn.in_atomic_block:
        raise BackupError("restore: called inside a transaction; run it on its own")
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        # through SQLite, not a file copy: a server with the database open sees the new
        # contents instead of a file pulled from under its WAL
        source.backup(conn.connection, pages=-1, progress=_Deadline(BUSY_SECONDS, "restore"))
    finally:
        source.close()
    with conn.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")


def _restore_postgresql(alias: str, path: Path) -> None:
    connection, env = _pg_connection(alias)
    connections[alias].close()  # no session of ours holds a lock on what is dropped
    args = [_pg_command("pg_restore"), "--clean", "--if-exists", "--no-owner"]
    _run([*args, "--single-transaction", *connection, str(path)], env, "pg_restore")


def verify(alias: str = DEFAULT_DB_ALIAS) -> dict:
    """What the database holds, the migrations not yet applied, and the items whose cached
    judgment_count disagrees with their judgments (none in a consistent database)."""
    from pairwise.models import ComparisonItem

    conn = connections[alias]
    plan = MigrationExecutor(conn).migration_plan(MigrationExecutor(conn).loader.graph.leaf_nodes())
    report = {"contents": database_contents(alias), "unapplied_migrations": len(plan)}
    if not plan:  # the models match the tables: the ORM can read them
        drift = (
            ComparisonItem.objects.using(alias)
            .annotate(n=Count("judgments"))
            .exclude(n=F("judgment_count"))
        )
        report["count_drift"] = list(drift.values_list("public_id", flat=True)[:20])
    return report
