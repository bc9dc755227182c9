"""Token authentication that reads the token, its user and the user's roles in one query.

DRF's TokenAuthentication reads the token and its user, and the permission check then asks
for the user's groups: two queries on every API request, whose ORM building cost more CPU
than the database spends on them. Same behaviour and messages as DRF's, and also:

- a token older than `API_TOKEN_DAYS` (0: never) is refused (401), read in the same query;
- an account that must still replace its one-time password is refused (403) until it has,
  on the password page (`accounts.must_change_password`, read in the same query);
- a token that matches none is a failed login of the client's address (django-axes, as the
  login form's): after `LOGIN_FAILURE_LIMIT` of them within `LOGIN_LOCKOUT_MINUTES` the
  address gets 429 with Retry-After. A valid token is never held back by its address's
  lockout (its holder is not guessing), so the hot path asks axes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from pairwise import auth, roles
from pairwise.services import sql


class KnownTokenRefused(exceptions.AuthenticationFailed):
    """A real token that may not be used (inactive user, expired): not a guess."""


def _issued_before():
    """Tokens created before this are expired (None: tokens never expire)."""
    if not settings.API_TOKEN_DAYS:
        return None
    cutoff = timezone.now() - timedelta(days=settings.API_TOKEN_DAYS)
    return connection.ops.adapt_datetimefield_value(cutoff)


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except KnownTokenRefused:
            raise
        except exceptions.AuthenticationFailed:
            _failed_login(request._request)
            raise

    def authenticate_credentials(self, key):
        params = {f"role_{name}": name for name in roles.ROLES}
        statement = sql.token_user(connection.vendor)
        found = sql.fetch(statement, {**params, "key": key, "issued_before": _issued_before()})
        if not found:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        row = found[0]
        user = sql.instance(get_user_model(), row)
        if not user.is_active:
            raise KnownTokenRefused(_("User inactive or deleted."))
        *has_role, expired, must_change = row[-len(roles.ROLES) - 2 :]
        if expired:
            raise KnownTokenRefused(
                f"Token expired: tokens are valid for {settings.API_TOKEN_DAYS} days "
                "(API_TOKEN_DAYS). Ask an admin for a new one."
            )
        if must_change:
            raise exceptions.PermissionDenied(
                f"Set your own password first, at {auth.PASSWORD_PAGE}; "
                "the API answers once you have."
            )
        roles.remember_roles(user, [r for r, yes in zip(roles.ROLES, has_role, strict=True) if yes])
        return (user, Token(key=key, user=user))


def _failed_login(request) -> None:
    """A token that matches none: refuse it with 429 while the address is locked out, else
    record a failed login of the address (which may lock it: axes' middleware then answers
    with `auth.lockout_response`)."""
    credentials = {"username": None}  # no account: counted per address (auth.lockout_parameters)
    if AxesProxyHandler.is_locked(request, credentials):
        seconds = auth.lockout_seconds(request, credentials)
        raise exceptions.Throttled(seconds, auth.lockout_message(seconds, who="this address"))
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
