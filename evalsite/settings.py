"""Settings for the evaluation site: one file, every deployment difference from the environment.

Defaults give the embedded setup (SQLite and an embedded Redis under var/), so a fresh machine
runs as it is. See README section 4 for the table of variables.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _fail(variable: str, problem: str) -> None:
    """Stop start-up with one line that names the variable; no stack trace."""
    sys.stderr.write(f"evalsite: configuration error in {variable}: {problem}\n")
    raise SystemExit(2)


DEBUG = env.bool("DEBUG", default=True)
VAR_DIR = Path(env.str("EVALSITE_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        _fail("SECRET_KEY", "required when DEBUG is off (set a long random string)")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdefghij"

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
    "django_celery_results",
    "pairwise",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pairwise.middleware.LoginRequiredMiddleware",
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (production when DEBUG is off) ------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "pairwise.api.authentication.TokenWithRolesAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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

# --- The platform ---------------------------------------------------------------------------
_default_data = BASE_DIR.parent / "shared" / "data"
EVALSITE_DATA_DIR = Path(env.str("EVALSITE_DATA_DIR", default=str(_default_data)))
EVALSITE_MODELS_DIR = Path(env.str("EVALSITE_MODELS_DIR", default=str(VAR_DIR / "models")))
GENERATION_BATCH_SIZE = env.int("GENERATION_BATCH_SIZE", default=32)
LEASE_TTL_SECONDS = env.int("LEASE_TTL_SECONDS", default=15 * 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
