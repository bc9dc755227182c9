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


def _in_group(user, name: str) -> bool:
    if not user or not user.is_authenticated:
        return False
    cache = getattr(user, "_role_cache", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._role_cache = cache
    return name in cache


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_superuser) or _in_group(user, ADMIN)


def is_researcher(user) -> bool:
    """Researchers and admins manage studies and see results."""
    return is_admin(user) or _in_group(user, RESEARCHER)


def is_annotator(user) -> bool:
    return _in_group(user, ANNOTATOR)
