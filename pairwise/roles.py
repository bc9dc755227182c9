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


def remember_roles(user, names) -> None:
    """Keep `user`'s role names for this request (API token login reads them with the token)."""
    user._role_cache = set(names)


def _in_group(user, name: str) -> bool:
    if not user or not user.is_authenticated:
        return False
    if getattr(user, "_role_cache", None) is None:
        remember_roles(user, user.groups.values_list("name", flat=True))
    return name in user._role_cache


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_superuser) or _in_group(user, ADMIN)


def is_researcher(user) -> bool:
    """Researchers and admins manage studies and see results."""
    return is_admin(user) or _in_group(user, RESEARCHER)


def is_annotator(user) -> bool:
    return _in_group(user, ANNOTATOR)
