"""The API's request rates: DRF's throttles, counted per fixed window, keyed by the client
address the lockouts use.

`API_THROTTLE_USER` applies to every authenticated request (DEFAULT_THROTTLE_CLASSES).
`API_THROTTLE_ANON` applies to API requests that carry no credentials at all; DRF checks
throttles only after permissions, and every endpoint here needs an account, so inside DRF an
anonymous request would get its 401 before the anonymous rate was counted:
pairwise.middleware.AnonymousApiThrottleMiddleware counts it first. A request with a bad token
is a failed login instead (pairwise/api/authentication.py).

DRF's own throttles keep every request's time in the window and read and write the whole list
on each request: a client near 600/minute moves 600 timestamps per call. Here each window
(minute, hour ...) has one counter, incremented in place: two small cache operations whatever
the rate. A client can spend a window's allowance at its end and the next one's at once (twice
the rate for a moment), which is enough against floods. The counters live in the default cache,
which must be shared by the web processes (CACHE_URL, README section 4).
"""

from __future__ import annotations

import math

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from pairwise.auth import client_ip


class _FixedWindow:
    def get_rate(self):
        # DRF reads the rates once, when the class is defined; read them per request instead,
        # so a changed setting (a test's) applies
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request):
        return client_ip(request)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        return self._count(f"{key}:{window}") <= self.num_requests

    def _count(self, key: str) -> int:
        """This request's number in its window."""
        try:
            return self.cache.incr(key)
        except ValueError:  # the window's first request
            if self.cache.add(key, 1, self.duration + 1):
                return 1
            return self.cache.incr(key)  # another process added it meanwhile

    def wait(self) -> float:
        return max(1, math.ceil(self.window_ends - self.now))


class UserThrottle(_FixedWindow, UserRateThrottle):
    """`API_THROTTLE_USER` per account (per address for anonymous requests)."""


class AnonThrottle(_FixedWindow, AnonRateThrottle):
    """`API_THROTTLE_ANON` per client address, for requests without credentials."""
