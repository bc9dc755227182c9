"""Hand-written SQL or the ORM, for the annotator hot path's simple reads, on PostgreSQL.

    .venv/bin/python bench/sql_vs_orm.py [--items 9999] [--comparisons 3] [--annotators 20]
                                         [--history 150] [--rounds 30]

A throwaway database (``--db``, dropped at the end) gets a study built as bench/annotators.py
builds it (pairwise/bulk.py: ``--history`` judgments per annotator, ``ANALYZE``d), with the
production database options (prepared statements) and DEBUG off. Then, for every annotator and
round, each read runs once through the shipped code (SQL) and once as the plainest ORM queryset
that gives the same answer, alternately, so both see the same load; each answer is checked
against the other's. Timed: wall time of the call in this process (building the query,
the round trip, PostgreSQL's work, making the objects).

- open study: `access` lookup of the open study an annotator may judge (every annotator
  request) vs ``Study.objects.filter(pk, status).filter(Exists(member))``;
- progress: `allocation.progress` (one statement) vs an aggregate over the annotator's
  judgments joined to their items, and the study's cached open-item count;
- held lease: the live lease the annotator holds (`sql.held_lease`) vs a Lease queryset.

Printed: median and mean microseconds per call and the ratio ORM / SQL (median) for each;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from annotators import drop_database, recreate_database, setup_django  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=9999)
    parser.add_argument("--comparisons", type=int, default=3, choices=(2, 3))
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--history", type=int, default=150, help="judgments per annotator")
    parser.add_argument("--rounds", type=int, default=30, help="calls per annotator and read")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="bench_sql_vs_orm")
    return parser.parse_args(argv)


def orm_open_study(user, study_id: int):
    from django.db.models import Exists, OuterRef

    from pairwise import roles
    from pairwise.models import Study, StudyMember
    from pairwise.services import access

    if not access.may_judge(user):
        return None
    found = Study.objects.filter(pk=study_id, status=Study.Status.OPEN)
    if not roles.is_admin(user):
        member = StudyMember.objects.filter(
            study=OuterRef("pk"), user=user, role=StudyMember.Role.ANNOTATOR
        )
        found = found.filter(Exists(member))
    return next(iter(found[:1]), None)


def sql_open_study(user, study_id: int):
    from pairwise.services import access

    return access.study_to_annotate(user, study_id, open_only=True)


def orm_progress(study, user):
    from django.db.models import Count, Q

    from pairwise.models import Judgment, Study
    from pairwise.services import allocation, counters

    mine = Judgment.objects.filter(annotator=user, study=study).aggregate(
        judged=Count("pk"),
        open_mine=Count(
            "pk", filter=Q(item__is_gold=False, item__judgment_count__lt=study.overlap_k)
        ),
    )
    open_all = Study.objects.filter(pk=study.pk).values_list("open_items", flat=True)[0]
    if open_all is None:
        open_all = counters.count_open_items(study)
    return allocation._progress(study, {**mine, "open_all": open_all})


def sql_progress(study, user):
    from pairwise.services import allocation

    return allocation.progress(study, user)


def orm_held(study, user, now):
    from django.db.models import Exists, OuterRef

    from pairwise.models import Judgment, Lease

    judged = Judgment.objects.filter(item_id=OuterRef("item_id"), annotator=user)
    return (
        Lease.objects.filter(annotator=user, item__study=study, expires_at__gt=now)
        .exclude(Exists(judged))
        .order_by("created_at")
        .values_list("item_id", "expires_at")
        .first()
    )


def sql_held(study, user, now):
    from django.db import connection

    from pairwise.services import sql

    params = {"study": study.pk, "user": user.pk, "now": sql.at(now)}
    ((item_id, expires),) = sql.fetch(sql.held_lease(connection.vendor), params)
    return None if item_id is None else (item_id, expires)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main(argv=None) -> dict:
    opts = parse_args(argv)
    os.environ.update(DEBUG="0", SECRET_KEY="bench-" + "x" * 50, ALLOWED_HOSTS="127.0.0.1")
    recreate_database(opts.pg, opts.db)
    var_dir = Path(f"/tmp/{opts.db}-var")
    var_dir.mkdir(exist_ok=True)
    try:
        setup_django(f"{opts.pg}/{opts.db}", var_dir)
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from pairwise import roles
        from pairwise.bulk import populate
        from pairwise.models import Study
        from pairwise.services import allocation

        study_id, _ = populate(
            opts.items,
            n_annotators=opts.annotators,
            k=3,
            seed=0,
            history=opts.history,
            comparisons=opts.comparisons,
        )
        study = Study.objects.get(pk=study_id)
        users = list(get_user_model().objects.filter(username__startswith="bench-annotator-"))
        for user in users:  # one live lease each, so the held-lease read finds one
            allocation.next_item(study, user)
        reads = {
            "open_study": (sql_open_study, orm_open_study, lambda u: (u, study_id)),
            "progress": (sql_progress, orm_progress, lambda u: (study, u)),
            "held_lease": (sql_held, orm_held, lambda u: (study, u, timezone.now())),
        }
        samples: dict[str, dict[str, list[float]]] = {r: {"sql": [], "orm": []} for r in reads}
        for round_ in range(opts.rounds + 2):  # two warm-up rounds: caches, prepared statements
            for user in users:
                roles.remember_roles(user, [roles.ANNOTATOR])  # as the token login does
                for name, (raw, orm, args) in reads.items():
                    a = args(user)
                    pair = [("sql", raw), ("orm", orm)]
                    if round_ % 2:
                        pair.reverse()
                    answers = {}
                    for kind, fn in pair:
                        seconds, answers[kind] = timed(fn, *a)
                        if round_ >= 2:
                            samples[name][kind].append(seconds)
                    _check(name, answers)
        result: dict = {"items": opts.items, "annotators": len(users), "history": opts.history}
        for name, by in samples.items():
            med = {k: statistics.median(v) * 1e6 for k, v in by.items()}
            mean = {k: statistics.fmean(v) * 1e6 for k, v in by.items()}
            ratio = med["orm"] / med["sql"]
            print(
                f"{name:11s} SQL {med['sql']:7.0f} us (mean {mean['sql']:7.0f})  "
                f"ORM {med['orm']:7.0f} us (mean {mean['orm']:7.0f})  ORM/SQL {ratio:.2f}"
            )
            result[name] = {
                "sql_us": round(med["sql"]),
                "orm_us": round(med["orm"]),
                "orm_over_sql": round(ratio, 2),
            }
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result))
        return result
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(opts.pg, opts.db)


def _check(name: str, answers: dict) -> None:
    sql_answer, orm_answer = answers["sql"], answers["orm"]
    if name == "open_study":
        same = getattr(sql_answer, "pk", None) == getattr(orm_answer, "pk", None)
    else:
        same = sql_answer == orm_answer
    if not same:
        raise SystemExit(f"{name}: SQL gave {sql_answer!r}, ORM gave {orm_answer!r}")


if __name__ == "__main__":
    main()
