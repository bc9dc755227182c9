"""Roles are Django groups: annotators judge, researchers manage studies, admins do everything."""

from __future__ import annotations

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANNOTATOR, RESEARCHER, ADMIN)


def ensure_groups() -> None:
    from django.contrib.auth.models import Group

    for name in ROLES:
        Group.objects.get_or_create(name=name)


def _group_names(user_id: int) -> set[str]:
    """The user's group names; in SQL because every API request asks (the ORM's version
    cost more CPU to build than the database spends answering it)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    q = connection.ops.quote_name
    groups = q(Group._meta.db_table)
    links = q(get_user_model().groups.through._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT g.name FROM {groups} g JOIN {links} ug ON ug.group_id = g.id "
            "WHERE ug.user_id = %s",
            [user_id],
        )
        return {name for (name,) in cursor.fetchall()}


def _in_group(user, name: str) -> bool:
    if not user or not user.is_authenticated:
        return False
    cache = getattr(user, "_role_cache", None)
    if cache is None:
        cache = _group_names(user.pk)
        user._role_cache = cache
    return name in cache


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_superuser) or _in_group(user, ADMIN)


def is_researcher(user) -> bool:
    """Researchers and admins manage studies and see results."""
    return is_admin(user) or _in_group(user, RESEARCHER)


def is_annotator(user) -> bool:
    return _in_group(user, ANNOTATOR)
