"""Logging in: the client's address, django-axes' lockout hooks, the login backend and form, and
the page where an invited account sets its own password.

Lockouts (README section 4): a login fails for a username or an address that has
`LOGIN_FAILURE_LIMIT` failures within `LOGIN_LOCKOUT_MINUTES`, even with the right password.
A bad API token counts as a failed login of its address (pairwise/api/authentication.py).
"""

from __future__ import annotations

import math
from datetime import datetime

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessBase
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.utils import timezone

from pairwise.services import accounts

# The session remembers whether its user must still set a password (the middleware asks the
# database once per session, not on every request).
MUST_CHANGE_PASSWORD = "pairwise_must_change_password"
PASSWORD_PAGE = "/accounts/password/"  # evalsite/urls.py, name "password_change"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind a proxy the entry of `CLIENT_IP_HEADER` that
    the nearest trusted proxy wrote (`CLIENT_IP_PROXY_COUNT` from the right: anything left of it
    came from the client and can be forged). Lockouts and API throttles both use it."""
    header = settings.CLIENT_IP_META_KEY
    if header:
        hops = [h.strip() for h in request.META.get(header, "").split(",") if h.strip()]
        if hops:
            return hops[max(len(hops) - settings.CLIENT_IP_PROXY_COUNT, 0)]
    return request.META.get("REMOTE_ADDR")


def lockout_parameters(request_or_attempt, credentials: dict | None = None) -> list:
    """axes' AXES_LOCKOUT_PARAMETERS: `LOGIN_LOCKOUT_BY` for a login with a username, the address
    alone for one without (a bad API token): a missing username would otherwise match every
    other token failure, from any address."""
    if isinstance(request_or_attempt, AccessBase):
        username = request_or_attempt.username
    else:
        username = get_client_username(request_or_attempt, credentials)
    return settings.LOGIN_LOCKOUT_PARAMETERS if username else ["ip_address"]


def lockout_ends(request: HttpRequest, credentials: dict | None = None) -> datetime | None:
    """When the lockout that refuses this request ends, or None if nothing locks it.

    axes keeps one record per (username, address, user agent) with its failure count and last
    failure; the failures of a record stop counting `cool-off` after its last one. A lockout
    (one of the lockout parameters matching `limit` failures or more) ends when enough of its
    records have aged out, oldest first.
    """
    AxesProxyHandler.update_request(request)
    limit, cool_off = get_failure_limit(request, credentials), get_cool_off(request)
    handler = AxesProxyHandler.get_implementation()
    ends = None
    for attempts in handler.get_user_attempts(request, credentials):
        records = list(
            attempts.order_by("attempt_time").values_list("attempt_time", "failures_since_start")
        )
        left = sum(n for _, n in records)
        for attempt_time, n in records:
            if left < limit:
                break
            left -= n
            if left < limit:  # this record ageing out ends the lockout
                end = attempt_time + cool_off
                ends = end if ends is None else max(ends, end)
    return ends


def lockout_seconds(request: HttpRequest, credentials: dict | None = None) -> int:
    """Seconds until the lockout that refuses this request ends (at least 1)."""
    ends = lockout_ends(request, credentials) or timezone.now() + get_cool_off(request)
    return max(1, math.ceil((ends - timezone.now()).total_seconds()))


def lockout_message(seconds: int, *, who: str = "this account or address") -> str:
    minutes = math.ceil(seconds / 60)
    return (
        f"Too many failed logins for {who}: try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}, or ask an admin to unlock it."
    )


def lockout_response(
    request: HttpRequest, original_response=None, credentials: dict | None = None
) -> HttpResponse:
    """axes' AXES_LOCKOUT_CALLABLE: 429 with Retry-After; a page for people, JSON for the API."""
    seconds = lockout_seconds(request, credentials)
    if request.path_info.startswith("/api/"):
        detail = lockout_message(seconds, who="this address")
        response = JsonResponse({"detail": detail}, status=429)
    else:
        context = {
            "minutes": math.ceil(seconds / 60),
            "failure_limit": get_failure_limit(request, credentials),
        }
        response = render(request, "registration/lockout.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


class PasswordLifecycleBackend(ModelBackend):
    """Django's ModelBackend that also refuses a one-time password past its expiry, whatever
    the login form (the site's, the admin's)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and (expired := accounts.one_time_password_expired(user)):
            message = (
                f"Your one-time password expired on {expired:%Y-%m-%d %H:%M} UTC. "
                "Ask an admin for a new one."
            )
            if request is not None:
                request.login_refused = message  # for LoginForm's message
            raise PermissionDenied(message)  # stops authenticate(): a failed login
        return user


class LoginForm(AuthenticationForm):
    """The login form, naming why a right password was refused (expired one-time password)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
    }

    def get_invalid_login_error(self):
        refused = getattr(self.request, "login_refused", None)
        if refused:
            return ValidationError(refused, code="password_expired")
        return super().get_invalid_login_error()


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change (old password, new one twice, AUTH_PASSWORD_VALIDATORS); after
    it an invited account is free to use the site."""

    template_name = "registration/change_password.html"
    success_url = reverse_lazy("home")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["required"] = bool(self.request.session.get(MUST_CHANGE_PASSWORD))
        return context

    def form_valid(self, form):
        response = super().form_valid(form)  # saves it, keeps this session logged in
        accounts.no_password_change(self.request.user)
        self.request.session[MUST_CHANGE_PASSWORD] = False
        messages.success(self.request, "Your new password is set.")
        return response
