"""Account life cycle: one-time passwords, login lockouts and API tokens.

An invited account gets a random one-time password that must be replaced at first login and,
when invited with an expiry, stops working after it (`Profile.must_change_password`,
`Profile.password_expires_at`). Lockouts are django-axes' failed-attempt records; API tokens are
DRF's. The invite command, the login backend, the password-change page, the middleware, the
token authentication, the demo and the admin actions all call these functions.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.utils import timezone

from pairwise.models import Profile


def issue_one_time_password(user, *, expires_days: int | None = None) -> str:
    """Give `user` a new random password that must be changed at first login and, with
    `expires_days`, is refused after that many days. Returns it: it is shown once."""
    password = secrets.token_urlsafe(12)  # 16 characters, 96 random bits
    user.set_password(password)
    user.save(update_fields=["password"])
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    Profile.objects.update_or_create(
        user=user, defaults={"must_change_password": True, "password_expires_at": expires_at}
    )
    return password


def no_password_change(user) -> None:
    """`user` sets no password of their own: after they did, or for a scripted account (the
    demo's). Clears the first-login change and the one-time password's expiry."""
    Profile.objects.update_or_create(
        user=user, defaults={"must_change_password": False, "password_expires_at": None}
    )


def must_change_password(user) -> bool:
    """Whether `user` still logs in with a one-time password they must replace."""
    return Profile.objects.filter(user=user, must_change_password=True).exists()


def one_time_password_expired(user) -> datetime | None:
    """When `user`'s one-time password expired, if it is still unchanged and past its date."""
    return (
        Profile.objects.filter(
            user=user, must_change_password=True, password_expires_at__lte=timezone.now()
        )
        .values_list("password_expires_at", flat=True)
        .first()
    )


def unlock_logins(usernames: Iterable[str]) -> int:
    """Forget the failed logins recorded for these usernames (from any address), so a locked
    account can log in again at once. Returns how many attempt records were deleted. An address
    locked for failures on other accounts stays locked: the admin's "Access attempts" list."""
    from axes.utils import reset

    # never an empty name: axes' reset without a username deletes every record
    return sum(reset(username=name) for name in usernames if name)


def revoke_api_tokens(users) -> int:
    """Delete the API tokens of `users` (a queryset or list): a client using one gets 401 from
    its next request. Returns how many were deleted."""
    from rest_framework.authtoken.models import Token

    return Token.objects.filter(user__in=users).delete()[0]
