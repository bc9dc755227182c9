"""Login is required everywhere except the health check, the login page and static files.

The API is left to DRF, which authenticates sessions and tokens and answers 401/403 as JSON;
its interactive docs are a page like any other.
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login

OPEN_PREFIXES = ("/healthz", "/accounts/login/", "/static/")


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
