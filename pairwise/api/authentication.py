"""Token authentication that reads the token, its user and the user's roles in one query.

DRF's TokenAuthentication reads the token and its user, and the permission check then asks
for the user's groups: two queries on every API request, whose ORM building cost more CPU
than the database spends on them. Same behaviour and messages as DRF's.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from pairwise import roles
from pairwise.services import rows


@cache
def _sql() -> str:
    q = connection.ops.quote_name
    user_model = get_user_model()
    users, tokens = q(user_model._meta.db_table), q(Token._meta.db_table)
    groups = q(Group._meta.db_table)
    links = q(user_model.groups.through._meta.db_table)
    has_role = ", ".join(
        f"EXISTS (SELECT 1 FROM {links} ug JOIN {groups} g ON g.id = ug.group_id "
        f"WHERE ug.user_id = u.id AND g.name = %s) AS {q('has_role_' + name)}"
        for name in roles.ROLES
    )
    return (
        f"SELECT {rows.columns(user_model, 'u')}, {has_role} FROM {tokens} t "
        f"JOIN {users} u ON u.id = t.user_id "
        "WHERE t.key = %s"
    )


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        found = rows.fetch(_sql(), [*roles.ROLES, key])
        if not found:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = rows.instance(get_user_model(), found[0])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        has_role = found[0][-len(roles.ROLES) :]
        roles.remember_roles(user, [r for r, yes in zip(roles.ROLES, has_role, strict=True) if yes])
        return (user, Token(key=key, user=user))
