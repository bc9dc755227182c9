"""`manage.py backup` and `manage.py restore`: a SQLite backup taken while annotators submit
holds every judgment committed before it began, restores into a fresh database that passes
`check` and whose counts agree; a restore refuses the wrong file and a database with data."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.factories import UserFactory, make_study

REPO = Path(__file__).resolve().parents[2]

SETUP = """
from tests.factories import annotator, make_study
study, _, _ = make_study(n_contexts={n}, k=3)
for i in range({annotators}):
    annotator(username=f"ann{{i}}")
print(study.pk)
"""

# an annotator: next, then submit, through the allocator's services, until told to stop
ANNOTATE = """
import os, time
from django.contrib.auth import get_user_model
from pairwise.models import Study
from pairwise.services import allocation
study = Study.objects.get(pk={study})
user = get_user_model().objects.get(username="{name}")
done = 0
while not os.path.exists("{stop}"):
    item = allocation.next_item(study, user)
    if item is None:
        break
    allocation.submit(study, user, item.public_id, {{c: "left" for c in study.criteria}})
    done += 1
    time.sleep(0.1)
print(done)
"""


def _env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    return {**env, "EVALSITE_VAR_DIR": str(var_dir), "LOG_LEVEL": "WARNING"}


def _manage(var_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=_env(var_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, f"manage.py {args[0]}: {done.stderr[-3000:]}"
    return done


def _judgments(db: Path) -> set[int]:
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM pairwise_judgment")}


def _count_drift(db: Path) -> list:
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT i.public_id, i.judgment_count, COUNT(j.id) FROM pairwise_comparisonitem i "
            "LEFT JOIN pairwise_judgment j ON j.item_id = i.id "
            "GROUP BY i.id HAVING i.judgment_count != COUNT(j.id)"
        ).fetchall()


@pytest.mark.slow
def test_sqlite_backup_while_annotators_submit_restores_every_committed_judgment(tmp_path):
    live, fresh = tmp_path / "live", tmp_path / "fresh"
    _manage(live, "migrate", "-v0")
    study = _manage(live, "shell", "-c", SETUP.format(n=300, annotators=3)).stdout.split()[-1]
    db = live / "db.sqlite3"
    stop = tmp_path / "stop"
    annotators = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                ANNOTATE.format(study=study, name=f"ann{i}", stop=stop),
            ],
            cwd=REPO,
            env=_env(live),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(_judgments(db)) < 30:  # every annotator is submitting
            assert time.monotonic() < deadline, "the annotators did not start submitting"
            assert all(p.poll() is None for p in annotators), annotators[0].communicate()
            time.sleep(0.2)
        committed = _judgments(db)  # committed before the backup starts
        out = _manage(live, "backup", "--out", str(tmp_path / "site.bak")).stdout
        during = _judgments(db) - committed
        still_running = [p.poll() is None for p in annotators]
    finally:
        stop.touch()
        results = [p.communicate(timeout=120) for p in annotators]
    assert all(p.returncode == 0 for p in annotators), [err[-2000:] for _, err in results]
    assert "sqlite backup: " in out
    assert during and all(still_running), "the backup ran while nobody was submitting"
    final = _judgments(db)

    backed_up = _judgments(tmp_path / "site.bak")
    assert committed <= backed_up <= final  # all committed before, nothing never committed
    assert not _count_drift(tmp_path / "site.bak")

    restored = _manage(fresh, "restore", str(tmp_path / "site.bak")).stdout
    assert f"{len(backed_up)} judgments" in restored
    assert _judgments(fresh / "db.sqlite3") == backed_up
    assert not _count_drift(fresh / "db.sqlite3")
    assert _manage(fresh, "check", "--database", "default").returncode == 0
    assert "No planned migration operations" in _manage(fresh, "migrate", "--plan").stdout

    # the restored site refuses to be overwritten by accident, and takes it when told
    again = _manage(fresh, "restore", str(tmp_path / "site.bak"), check=False)
    assert again.returncode != 0 and "--force" in again.stderr
    assert _manage(fresh, "restore", str(tmp_path / "site.bak"), "--force").returncode == 0


# --- What a restore refuses (in-process, against the test database) -----------------------------


@pytest.mark.django_db
def test_restore_refuses_files_that_are_not_a_backup_of_this_site(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CommandError, match=r"notes.txt: not a backup: expected a SQLite"):
        call_command("restore", str(text))
    empty = tmp_path / "empty.bak"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="empty.bak: the file is empty"):
        call_command("restore", str(empty))
    with pytest.raises(CommandError, match="missing.bak: no such file"):
        call_command("restore", str(tmp_path / "missing.bak"))
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(CommandError, match="not of this site: no table django_migrations"):
        call_command("restore", str(other))
    dump = tmp_path / "site.dump"
    dump.write_bytes(b"PGDMP\x01\x0e\x00" + b"\x00" * 64)
    with pytest.raises(CommandError, match="a postgresql backup, but this site's database is sql"):
        call_command("restore", str(dump))


@pytest.mark.django_db(transaction=True)
def test_restore_refuses_to_replace_data_without_force(tmp_path):
    make_study(n_contexts=1, k=1)
    UserFactory(username="someone")
    call_command("backup", "--out", str(tmp_path / "site.bak"))
    with pytest.raises(CommandError, match=r"holds data \(1 accounts, 1 studies.*--force"):
        call_command("restore", str(tmp_path / "site.bak"))


def test_backup_names_a_folder_given_as_the_file(tmp_path, db):
    with pytest.raises(CommandError, match="is a folder; give a file name"):
        call_command("backup", "--out", str(tmp_path))
