"""Settings for the evaluation site: one file, every deployment difference from the environment.

Defaults give the embedded setup (SQLite and an embedded Redis under var/), so a fresh machine
runs as it is. See README section 4 for the table of variables.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _fail(variable: str, problem: str) -> None:
    """Stop start-up with one line that names the variable; no stack trace."""
    sys.stderr.write(f"evalsite: configuration error in {variable}: {problem}\n")
    raise SystemExit(2)


def _flag(variable: str, default: bool) -> bool:
    """A yes/no variable: 1/0 (or true/false, yes/no, on/off); anything else stops start-up."""
    raw = os.environ.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    _fail(variable, f"{os.environ[variable]!r} is not a yes/no value; expected 1 or 0")


def _secret_key(path: Path) -> str:
    """The key stored in `path`, generated there once (mode 0600) when the file is missing.

    The new key is written to a private temporary file and hard-linked into place. The link
    appears whole or not at all and fails when the file exists, so processes starting at once
    (serve's web server and workers) all read the one key that won.
    """
    if not path.exists():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(50) + "\n")
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process generated it first: use that one
            finally:
                os.unlink(tmp)
        except OSError as exc:
            _fail("SECRET_KEY", f"unset, and {path} cannot be written ({exc.strerror})")
    try:
        key = path.read_text().strip()
    except OSError as exc:
        _fail("SECRET_KEY", f"unset, and {path} cannot be read ({exc.strerror})")
    if len(key) < 50:
        _fail("SECRET_KEY", f"unset, and {path} holds no key of 50+ characters; delete it")
    return key


DEBUG = _flag("DEBUG", default=False)
VAR_DIR = Path(env.str("EVALSITE_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Unset: one key generated into the var directory and kept, so sessions outlive restarts and
# every process of a deployment signs with the same key. Never a key from the repository.
SECRET_KEY = env.str("SECRET_KEY", default="") or _secret_key(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Database -------------------------------------------------------------------------------
_database_url = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    with warnings.catch_warnings():  # "Engine not recognized": reported below in one line
        warnings.simplefilter("ignore")
        _db = environ.Env.db_url_config(_database_url)
except (ImproperlyConfigured, KeyError, ValueError) as exc:
    _fail(
        "DATABASE_URL",
        f"cannot parse {_database_url!r} ({exc}); expected e.g. "
        "postgres://user@host:5432/name or sqlite:////abs/path/db.sqlite3",
    )
if not _db.get("ENGINE") or (_db["ENGINE"].endswith("sqlite3") and not _db.get("NAME")):
    _fail("DATABASE_URL", f"{_database_url!r} names no database engine or file")
if not _db["ENGINE"].endswith(("postgresql", "sqlite3")):
    _fail(
        "DATABASE_URL",
        f"{_database_url!r}: engine {_db['ENGINE']} is not supported; "
        "expected postgres://... or sqlite:///...",
    )
if _db["ENGINE"].endswith("sqlite3"):
    # IMMEDIATE transactions serialise writers up front, so check-then-insert in the allocator
    # is correct on SQLite too; WAL lets the web server read while the worker writes.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    _db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    # Prepared statements: psycopg binds parameters on the server and prepares a statement a
    # connection has run twice, so PostgreSQL stops re-planning the allocator's queries on every
    # request (half its CPU per annotator request; bench/RESULTS.md). Set DB_PREPARE=0 behind a
    # connection pooler in transaction mode (PgBouncer before 1.21), which cannot keep them.
    if env.bool("DB_PREPARE", default=True):
        _db["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Applications ---------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_celery_results",
    "auditlog",
    "axes",
    "pairwise",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # anonymous /healthz probes are answered here, skipping the rest (a flood costs ~nothing)
    "pairwise.middleware.HealthProbeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    # a NUL in a path, query or form is a 400 naming it, before anything reaches the database
    "pairwise.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # the signed-in user (and address) on every audit log row written during the request:
    # auditlog's middleware, reading the user late enough to see an API token's
    "pairwise.services.audit.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pairwise.middleware.LoginRequiredMiddleware",
    "pairwise.middleware.PasswordChangeRequiredMiddleware",
    "pairwise.middleware.AnonymousApiThrottleMiddleware",
    # last: turns a login refused for too many failures into the lockout answer (429)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "evalsite.urls"
WSGI_APPLICATION = "evalsite.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Accounts: logins, lockouts, passwords (README section 4) --------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before any password check
    "pairwise.auth.PasswordLifecycleBackend",  # ModelBackend; refuses expired one-time passwords
]
# Passwords people choose (invited accounts set theirs at first login; one-time passwords are
# random, 16 characters).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"


# django-axes: a login is refused, even with the right password, while its username or its
# address has LOGIN_FAILURE_LIMIT failures within LOGIN_LOCKOUT_MINUTES (LOGIN_LOCKOUT_BY).
def _whole(variable: str, default: int, minimum: int) -> int:
    """A whole number of at least `minimum`; anything else stops start-up naming the variable."""
    raw = os.environ.get(variable, "").strip() or str(default)
    if not re.fullmatch(r"-?[0-9]+", raw) or int(raw) < minimum:
        _fail(variable, f"{raw!r} is not a whole number >= {minimum}")
    return int(raw)


AXES_FAILURE_LIMIT = _whole("LOGIN_FAILURE_LIMIT", 5, 1)
AXES_COOLOFF_TIME = timedelta(minutes=_whole("LOGIN_LOCKOUT_MINUTES", 15, 1))
# "username,ip_address": each counts alone (a guessed account locks whatever the addresses; one
# address spraying many accounts locks too); "username+ip_address": only the pair counts.
_lockout_by = env.str("LOGIN_LOCKOUT_BY", default="username,ip_address")
LOGIN_LOCKOUT_PARAMETERS = [
    [p.strip() for p in entry.split("+")] if "+" in entry else entry.strip()
    for entry in _lockout_by.split(",")
    if entry.strip()
]
if not LOGIN_LOCKOUT_PARAMETERS or not {
    p for entry in LOGIN_LOCKOUT_PARAMETERS for p in ([entry] if isinstance(entry, str) else entry)
} <= {"username", "ip_address", "user_agent"}:
    _fail(
        "LOGIN_LOCKOUT_BY",
        f"{_lockout_by!r}: expected entries of username, ip_address or user_agent, separated by "
        "',' (each counts alone) or joined by '+' (counted together)",
    )
AXES_LOCKOUT_PARAMETERS = "pairwise.auth.lockout_parameters"  # the address alone for API tokens
AXES_LOCKOUT_CALLABLE = "pairwise.auth.lockout_response"  # 429, a page or JSON, Retry-After
AXES_CLIENT_IP_CALLABLE = "pairwise.auth.client_ip"
# A refused attempt during a lockout does not extend it: the page's "try again in N minutes"
# holds, and a guesser still gets no more than the limit per cool-off.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Behind a reverse proxy: the header it writes the client address into (X-Forwarded-For,
# X-Real-IP) and how many proxies append to it; unset, REMOTE_ADDR is the client.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")
if CLIENT_IP_HEADER and not re.fullmatch(r"[A-Za-z0-9-]+", CLIENT_IP_HEADER):
    _fail("CLIENT_IP_HEADER", f"{CLIENT_IP_HEADER!r} is not a header name (e.g. X-Forwarded-For)")
CLIENT_IP_META_KEY = (
    ("HTTP_" + CLIENT_IP_HEADER.upper().replace("-", "_")) if CLIENT_IP_HEADER else ""
)
CLIENT_IP_PROXY_COUNT = _whole("CLIENT_IP_PROXY_COUNT", 1, 1)
# API tokens older than this are refused (0: never); an admin revokes one and adds a new one.
API_TOKEN_DAYS = _whole("API_TOKEN_DAYS", 90, 0)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# WhiteNoise serves the apps' static folders where they are (indexed once at start-up, or on
# every request with DEBUG on): every entry point (serve, demo, gunicorn, runserver, the tests)
# serves CSS and JS with DEBUG off, with no collectstatic step to forget or to go stale.
# `collectstatic` still works (pre-compressed copies under STATIC_ROOT) for a proxy to serve.
WHITENOISE_USE_FINDERS = True

# --- Security -------------------------------------------------------------------------------
# HTTPS=1: the site is reached over TLS, through a proxy that sets X-Forwarded-Proto (README
# section 4). Off by default, because `serve` and the demo answer on plain http://127.0.0.1.
HTTPS = _flag("HTTPS", default=False)
if HTTPS:
    # trusted only behind the proxy, which overwrites it; a direct client could forge it
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = _flag("SECURE_SSL_REDIRECT", default=HTTPS)
# a load balancer or monitor probes the app directly, over plain http
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script, style or event handler anywhere: behaviour lives in pairwise/static/, the
# API docs load their set-up script as a file (SpectacularSwaggerSplitView). data: images are
# the results plots (SVG, so matplotlib's style attributes stay inside the image) and favicons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}


# --- REST API -------------------------------------------------------------------------------
def _rate(variable: str, default: str) -> str:
    """A DRF throttle rate such as 600/minute, checked here (DRF would fail on each request)."""
    rate = env.str(variable, default=default)
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", rate):
        _fail(variable, f"{rate!r} is not a rate; expected e.g. 600/minute (per s, m, h or d)")
    return rate


REST_FRAMEWORK = {
    # Token first: DRF answers 401 (with WWW-Authenticate: Token) only when the first scheme
    # names a challenge, and a session has none (it was 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pairwise.api.authentication.TokenWithRolesAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # per account; requests without credentials: pairwise.middleware.AnonymousApiThrottleMiddleware
    "DEFAULT_THROTTLE_CLASSES": ["pairwise.api.throttling.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": _rate("API_THROTTLE_USER", "600/minute"),
        "anon": _rate("API_THROTTLE_ANON", "60/minute"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "pairwise.api.schema.AutoSchema",  # documents the 4xx answers
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pairwise evaluation API",
    "DESCRIPTION": "Blind pairwise human evaluation of emotional-support dialogue models.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Celery ---------------------------------------------------------------------------------
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"redis+socket://{EMBEDDED_REDIS_SOCKET}")
_scheme = urlsplit(CELERY_BROKER_URL).scheme
if _scheme not in {"redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp", "memory"}:
    _fail(
        "CELERY_BROKER_URL",
        f"unsupported scheme {_scheme!r} in {CELERY_BROKER_URL!r}; "
        "expected redis://, redis+socket://, or amqp://",
    )
BROKER_IS_EMBEDDED = CELERY_BROKER_URL == f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
# A task still running when this runs out is handed to another worker, so it must outlive the
# longest task (a generation batch). Reconcile (below) covers lost messages much sooner.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": 2,
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"pairwise.tasks.generate_batch": {"queue": "generation"}}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=1800)
# a minute (a tenth of short limits) to clean up before the hard kill
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(60, CELERY_TASK_TIME_LIMIT // 10)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
RECONCILE_INTERVAL_SECONDS = env.int("RECONCILE_INTERVAL_SECONDS", default=60)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "pairwise.tasks.reconcile", "schedule": RECONCILE_INTERVAL_SECONDS},
}
# Every worker writes a WorkerHeartbeat row this often (pairwise/services/heartbeat.py), while it
# reaches its broker; /healthz counts a worker alive while its row is younger than
# HEALTH_STALE_SECONDS and caches its report HEALTH_CACHE_SECONDS per web process.
HEARTBEAT_SECONDS = env.float("HEARTBEAT_SECONDS", default=5.0)
HEALTH_STALE_SECONDS = env.float("HEALTH_STALE_SECONDS", default=3 * HEARTBEAT_SECONDS)
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=3.0)
HEALTH_QUEUES = ("default", "generation")  # each needs a live worker for /healthz to say ok

# --- Cache: the API's throttle counters ------------------------------------------------------
# DRF's throttles count requests in the default cache, which every web process must share
# (gunicorn runs several), or each counts alone and the limit is multiplied. `serve` and the demo
# give their children EMBEDDED_CACHE_URL: the embedded Redis, database 1 (the broker's is 0),
# about 0.1 ms a request. With an external broker set CACHE_URL=redis://host:6379/1. The default,
# one process's memory, is right for the tests and runserver. A file cache (filecache:///path)
# is shared too, but cost 0.4-1.2 ms a request here: it lists its folder on every write.
CACHE_URL = env.str("CACHE_URL", default="locmemcache://")
try:
    CACHES = {"default": environ.Env.cache_url_config(CACHE_URL)}
except ImproperlyConfigured as exc:
    _fail("CACHE_URL", f"{CACHE_URL!r}: {exc}; expected e.g. redis://127.0.0.1:6379/1")
EMBEDDED_CACHE_URL = f"redis://{EMBEDDED_REDIS_SOCKET}?db=1"

# --- The platform ---------------------------------------------------------------------------
_default_data = BASE_DIR.parent / "shared" / "data"
EVALSITE_DATA_DIR = Path(env.str("EVALSITE_DATA_DIR", default=str(_default_data)))
EVALSITE_MODELS_DIR = Path(env.str("EVALSITE_MODELS_DIR", default=str(VAR_DIR / "models")))
GENERATION_BATCH_SIZE = env.int("GENERATION_BATCH_SIZE", default=32)
LEASE_TTL_SECONDS = env.int("LEASE_TTL_SECONDS", default=15 * 60)

# Audit log (django-auditlog): role and membership changes are logged from these models'
# signals; study life cycle, registration, export and import by pairwise/services/audit.py.
# Judgments, leases, exposures and items are left out on purpose: the annotator hot path
# writes no audit rows.
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    {"model": "auth.user", "m2m_fields": {"groups"}, "exclude_fields": ["password", "last_login"]},
    "pairwise.studymember",
    {"model": "pairwise.studyinvite", "mask_fields": ["token"], "exclude_fields": ["uses"]},
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},  # its start-up banner, in every manage.py command
    },
}
