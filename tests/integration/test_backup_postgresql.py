"""`manage.py backup` / `restore` on PostgreSQL: pg_dump -Fc, then pg_restore --clean brings the
database back to what the backup holds (later judgments and accounts gone, counts consistent)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from pairwise.models import ComparisonItem, Judgment
from pairwise.services import allocation
from tests.factories import annotator, make_study

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed"),
]


def _judge(study, user, n: int) -> None:
    for _ in range(n):
        item = allocation.next_item(study, user)
        allocation.submit(study, user, item.public_id, {c: "left" for c in study.criteria})


def test_backup_and_restore_round_trip(tmp_path, capsys):
    study, _, _ = make_study(n_contexts=4, k=1)
    ann = annotator(username="pg-ann")
    _judge(study, ann, 2)
    before = set(Judgment.objects.values_list("pk", flat=True))

    dump = tmp_path / "site.dump"
    call_command("backup", "--out", str(dump))
    assert dump.read_bytes().startswith(b"PGDMP")
    assert "postgresql backup: " in capsys.readouterr().out

    _judge(study, ann, 1)  # after the backup: the restore takes it away
    annotator(username="late-account")
    with pytest.raises(CommandError, match=r"holds data .*--force"):
        call_command("restore", str(dump))

    call_command("restore", str(dump), "--force")
    assert f"{len(before)} judgments" in capsys.readouterr().out
    assert set(Judgment.objects.values_list("pk", flat=True)) == before
    assert not ComparisonItem.objects.filter(judgment_count__gt=0).exclude(
        pk__in=Judgment.objects.values("item_id")
    )
    assert sum(ComparisonItem.objects.values_list("judgment_count", flat=True)) == len(before)
    assert not get_user_model().objects.filter(username="late-account").exists()
    call_command("check", "--database", "default")


def test_a_sqlite_backup_is_refused_by_a_postgresql_site(tmp_path):
    other = tmp_path / "site.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE django_migrations (id INTEGER)")
    with pytest.raises(CommandError, match="a sqlite backup, but this site's database is postgres"):
        call_command("restore", str(other))
