"""Login is required everywhere except the health check, the login page, static files and
invite links.

The API is left to DRF, which authenticates sessions and tokens and answers 401/403 as JSON;
its interactive docs are a page like any other. Also here: an invited account reaches nothing
but the password page until it has set its own password, and API requests without credentials
are throttled per address (README section 4).
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect

from pairwise.api.throttling import AnonThrottle
from pairwise.auth import MUST_CHANGE_PASSWORD, PASSWORD_PAGE
from pairwise.services.accounts import must_change_password

# /join/: invite links enrol visitors without an account (pairwise.views.join)
OPEN_PREFIXES = ("/healthz", "/accounts/login/", "/static/", "/join/")


def _is_open(path: str) -> bool:
    if path.startswith("/api/"):
        return not path.startswith("/api/docs/")
    return path.startswith(OPEN_PREFIXES)


class LoginRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not _is_open(request.path) and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)


# what an account that must set its password may still reach
WHILE_CHANGING_PASSWORD = (PASSWORD_PAGE, "/accounts/logout/", *OPEN_PREFIXES)


class PasswordChangeRequiredMiddleware:
    """An invited account logged in with its one-time password reaches only the password page
    (and log out) until it has set its own: pages redirect there, the API answers 403 naming
    it. The session keeps the answer, so the database is asked once per login, not per request.
    Token requests are checked by the token authentication (pairwise/api/authentication.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and not request.path.startswith(WHILE_CHANGING_PASSWORD):
            must_change = request.session.get(MUST_CHANGE_PASSWORD)
            if must_change is None:
                must_change = request.session[MUST_CHANGE_PASSWORD] = must_change_password(
                    request.user
                )
            if must_change:
                if request.path.startswith("/api/"):
                    detail = f"Set your own password first, at {PASSWORD_PAGE}."
                    return JsonResponse({"detail": detail}, status=403)
                return redirect(PASSWORD_PAGE)
        return self.get_response(request)


class AnonymousApiThrottleMiddleware:
    """API_THROTTLE_ANON for API requests that carry no credentials (no session, no token).

    DRF checks throttles after permissions, and every endpoint needs an account, so inside DRF
    such a request is refused (401) before the anonymous rate counts it. Requests with a token
    are DRF's: a valid token gets the per-user rate, a bad one is a failed login."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        scheme = request.headers.get("Authorization", "").split(" ", 1)[0].lower()
        if (
            request.path.startswith("/api/")
            and not request.user.is_authenticated
            and scheme != "token"
        ):
            throttle = AnonThrottle()
            if not throttle.allow_request(request, None):
                wait = int(throttle.wait())
                response = JsonResponse(
                    {"detail": f"Too many requests: try again in {wait} seconds."}, status=429
                )
                response["Retry-After"] = str(wait)
                return response
        return self.get_response(request)


class RejectNulMiddleware:
    """400, naming the parameter, for a request whose path, query or form carries a NUL
    character. PostgreSQL can neither store nor compare one in text, so such a value reached
    the database as an error (a 500) wherever a view, a service or the admin used it; here it
    is refused before any of them runs. (The API's JSON fields refuse it themselves: DRF's.)"""

    FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = _nul_parameter(request, forms=request.content_type in self.FORMS)
        if name is None:
            return self.get_response(request)
        message = "contains a NUL character"
        if request.path_info.startswith("/api/"):
            return JsonResponse({name: [message]}, status=400)
        return HttpResponseBadRequest(f"{name}: {message}", content_type="text/plain")


def _nul_parameter(request, *, forms: bool) -> str | None:
    if "\x00" in request.path_info:
        return "path"
    sources = [request.GET, request.POST] if forms and request.method == "POST" else [request.GET]
    for params in sources:
        for key, values in params.lists():
            if "\x00" in key or any("\x00" in v for v in values):
                return key.replace("\x00", "\\x00")
    return None


class HealthProbeMiddleware:
    """Anonymous `/healthz` probes skip the rest of the stack (sessions, CSRF, CSP, audit,
    throttles, lockouts, the host check): a probe carries no session cookie and gets only
    `{"ok": ...}` from the same view, so a flood of probes costs about what a bare WSGI call
    does (bench/health.py). Signed-in staff (a session cookie) go through it all for the
    details. Placed right after SecurityMiddleware, whose headers the answer keeps."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz" and settings.SESSION_COOKIE_NAME not in request.COOKIES:
            from django.contrib.auth.models import AnonymousUser

            from pairwise.views import healthz

            request.user = AnonymousUser()
            return healthz(request)
        return self.get_response(request)
