"""Visio Broker settings, read from the environment (documented in deploy/env.example).

Two profiles, chosen by VISIO_ENV:
- ``development`` (default): the embedded mode of ``make run``. Without DATABASE_URL it uses
  SQLite under var/, without a broker URL kombu's filesystem transport under var/, and mail goes
  to an mbox file under var/mail/.
- ``production``: refuses to start without its secrets and services; secure cookies, HSTS, TLS.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from visio_broker.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_secret,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VISIO_VAR_DIR", str(BASE_DIR / "var"))).resolve()

VISIO_ENV = env_choice("VISIO_ENV", "development", ("development", "production"))
PRODUCTION = VISIO_ENV == "production"


def _required(name: str, value: str) -> str:
    if PRODUCTION and not value:
        raise ImproperlyConfigured(f"{name} is required when VISIO_ENV=production")
    return value


# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when VISIO_ENV=production")

# Development gets a fixed, clearly marked key so `make run` needs no set-up; production has none.
SECRET_KEY = _required("SECRET_KEY", env_secret("SECRET_KEY")) or (
    "development-only-insecure-key-never-use-in-production-0123456789"
)
if PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long")

# Key of the HMAC that turns a calendar feed's stored nonce into its URL token. Apart from
# SECRET_KEY so either can be rotated alone; rotating it changes every feed URL.
FEED_TOKEN_KEY = _required("FEED_TOKEN_KEY", env_secret("FEED_TOKEN_KEY")) or (
    hashlib.sha256(f"feed-token-key:{SECRET_KEY}".encode()).hexdigest()
)
if PRODUCTION and len(FEED_TOKEN_KEY) < 32:
    raise ImproperlyConfigured("FEED_TOKEN_KEY must be at least 32 characters long")

SITE_URL = env_url("SITE_URL", "http://localhost:8000", schemes=("http", "https")).rstrip("/")
if PRODUCTION and not SITE_URL.startswith("https://"):
    raise ImproperlyConfigured("SITE_URL must be an https:// URL when VISIO_ENV=production")
_site_host = urlsplit(SITE_URL).hostname or "localhost"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when VISIO_ENV=production")
if _site_host not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_site_host)
CSRF_TRUSTED_ORIGINS = [SITE_URL, *env_list("CSRF_TRUSTED_ORIGINS")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "visio_broker",
    "agencies",
    "meetings",
    "rooms",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # From here on, the middleware from agencies and visio_broker steps aside for API calls,
    # which carry a key and no session (visio_broker.middleware.browser_only).
    # Django's, reading the user and their membership in one query (agencies.middleware).
    "agencies.middleware.AuthenticationMiddleware",
    "visio_broker.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "visio_broker.middleware.UserSessionsMiddleware",
    "agencies.middleware.UserLanguageMiddleware",
    "agencies.middleware.RequireMfaForAdminsMiddleware",
]

ROOT_URLCONF = "visio_broker.urls"
WSGI_APPLICATION = "visio_broker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "agencies.context_processors.membership",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------

DATABASE_URL = _required("DATABASE_URL", env_url("DATABASE_URL", secret=True))
if DATABASE_URL:
    _db = dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    )
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, checking a kept connection without a round trip (the module says how).
        _db["ENGINE"] = "visio_broker.postgresql"
        _db["CONN_HEALTH_CHECKS"] = True
        _options = _db.setdefault("OPTIONS", {})
        _options["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
        # Parameters bound by the server, and statements a connection runs again and again (the
        # signed-in user, the API key, the join's meeting) prepared after a few runs: PostgreSQL
        # then skips parsing and planning them, which was most of its work per request (bench/).
        # Off for a transaction-pooling PgBouncer older than 1.21.
        if env_bool("DATABASE_PREPARED_STATEMENTS", True):
            _options["server_side_binding"] = True
            _options["prepare_threshold"] = 5
    DATABASES = {"default": _db}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Embedded mode: web, worker and beat share one SQLite file. IMMEDIATE transactions make
    # concurrent writers queue on the lock instead of failing with "database is locked".
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "visio-broker.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery ---------------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"), secret=True)
CELERY_BROKER_URL = _required(
    "CELERY_BROKER_URL or REDIS_URL", env_url("CELERY_BROKER_URL", secret=True) or REDIS_URL
)
EMBEDDED_BROKER = not CELERY_BROKER_URL

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "visio_broker.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "visio"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # A cache shared by all processes of the embedded mode, so rate limits hold across them.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

if EMBEDDED_BROKER:
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # Half a second keeps the embedded worker responsive without busy-polling the disk.
        "polling_interval": 0.5,
    }
    CELERY_RESULT_BACKEND = f"file://{VAR_DIR / 'celery-results'}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
    }
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL or CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
READYZ_BROKER_TIMEOUT = env_int("READYZ_BROKER_TIMEOUT", 2, minimum=1)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Rooms: backend health --------------------------------------------------------------------

# Every interval, beat asks each enabled media backend whether it is up (rooms.probe_backends).
# Off: no probes, every backend keeps its current state (demo backends that are not running).
ROOMS_HEALTH_ENABLED = env_bool("ROOMS_HEALTH_ENABLED", default=True)
ROOMS_HEALTH_INTERVAL_SECONDS = env_int("ROOMS_HEALTH_INTERVAL_SECONDS", 30, minimum=5)
# One failure makes a backend "degraded"; this many in a row make it "down" (rooms move away).
ROOMS_HEALTH_DOWN_AFTER = env_int("ROOMS_HEALTH_DOWN_AFTER", 3, minimum=1)
# Successes in a row that bring a degraded or down backend back to "healthy".
ROOMS_HEALTH_UP_AFTER = env_int("ROOMS_HEALTH_UP_AFTER", 2, minimum=1)
# Connect and read timeout of one probe, in seconds.
ROOMS_HEALTH_TIMEOUT_SECONDS = env_int("ROOMS_HEALTH_TIMEOUT_SECONDS", 5, minimum=1)
# A probe takes at most connect + read timeouts; it must end well before the next round starts.
if 4 * ROOMS_HEALTH_TIMEOUT_SECONDS > ROOMS_HEALTH_INTERVAL_SECONDS:
    raise ImproperlyConfigured(
        "ROOMS_HEALTH_TIMEOUT_SECONDS must be at most a quarter of ROOMS_HEALTH_INTERVAL_SECONDS"
    )

# --- Rooms: allocation ---------------------------------------------------------------------------

# Recurring meetings hold capacity for their occurrences up to this many days ahead; a periodic
# task (rooms.reservations_extend_horizon) extends long and endless series as time passes.
ROOM_RESERVATION_HORIZON_DAYS = env_int("ROOM_RESERVATION_HORIZON_DAYS", 180, minimum=1)

# Periodic tasks; django-celery-beat's DatabaseScheduler copies these entries into its tables at
# start-up, where operators can pause them in the admin.
# --- Outbox ----------------------------------------------------------------------------------

# Pending rows older than this are re-queued by the sweeper (their relay never ran).
OUTBOX_SWEEP_AFTER_SECONDS = env_int("OUTBOX_SWEEP_AFTER_SECONDS", 120, minimum=10)
OUTBOX_SWEEP_INTERVAL_SECONDS = env_int("OUTBOX_SWEEP_INTERVAL_SECONDS", 60, minimum=5)
# Longest wait between two delivery attempts; kept short: Redis redelivers long ETAs.
OUTBOX_RETRY_MAX_SECONDS = env_int("OUTBOX_RETRY_MAX_SECONDS", 300, minimum=10)
# Answers to one meeting arriving within this many seconds reach the organizer as one email;
# it is also the relay's countdown, so it stays short (Redis redelivers long ETAs).
ORGANIZER_NOTICE_BATCH_SECONDS = env_int("ORGANIZER_NOTICE_BATCH_SECONDS", 60, minimum=1)
if ORGANIZER_NOTICE_BATCH_SECONDS > 300:
    raise ImproperlyConfigured("ORGANIZER_NOTICE_BATCH_SECONDS must be at most 300")

# --- Agency webhooks ----------------------------------------------------------------------------

# Key of the HMAC that turns an endpoint's stored nonce into its signing secret (agencies.webhooks).
# Apart from SECRET_KEY so that one can be rotated alone; changing it changes every secret.
WEBHOOK_SECRET_KEY = env_secret("WEBHOOK_SECRET_KEY") or (
    hashlib.sha256(f"webhook-secret-key:{SECRET_KEY}".encode()).hexdigest()
)
if len(WEBHOOK_SECRET_KEY) < 32:
    raise ImproperlyConfigured("WEBHOOK_SECRET_KEY must be at least 32 characters long")
# Receivers must be https:// and on public addresses in production (no SSRF towards the
# platform's own network); development and tests deliver to local http:// receivers.
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", default=not PRODUCTION)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=not PRODUCTION)

# --- Reminders ----------------------------------------------------------------------------------

# The planner materialises reminders of occurrences starting within this many hours; it runs
# every minute, the sender every 30 seconds (meetings.reminders). At least 25: the one-day
# reminder must exist before it is due.
REMINDER_HORIZON_HOURS = env_int("REMINDER_HORIZON_HOURS", 48, minimum=25)

# --- Delta sync (GET /api/v1/changes/) ----------------------------------------------------------

# Changes are kept this many days (meetings.changes_purge, daily); a client whose cursor is older
# answers 410 Gone and syncs again in full.
CHANGES_RETENTION_DAYS = env_int("CHANGES_RETENTION_DAYS", 30, minimum=1)

CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "meetings.reminders_plan": {
        "task": "meetings.reminders_plan",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "meetings.reminders_send": {
        "task": "meetings.reminders_send",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "meetings.changes_purge": {
        "task": "meetings.changes_purge",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600},
    },
    "agencies.sessions_purge": {
        "task": "agencies.sessions_purge",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600},
    },
    "visio_broker.outbox_sweep": {
        "task": "visio_broker.outbox_sweep",
        "schedule": float(OUTBOX_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": OUTBOX_SWEEP_INTERVAL_SECONDS},
    },
    "rooms.probe_backends": {
        "task": "rooms.probe_backends",
        "schedule": float(ROOMS_HEALTH_INTERVAL_SECONDS),
        # A probe round that waited longer than one interval in the queue is stale: skip it.
        "options": {"expires": ROOMS_HEALTH_INTERVAL_SECONDS},
    },
    # Rooms allocation: series get their next occurrences' windows as the horizon moves on.
    "rooms.reservations_extend_horizon": {
        "task": "rooms.reservations_extend_horizon",
        "schedule": 6 * 3600.0,
        "options": {"expires": 3600},
    },
}

# --- Rooms: joining -----------------------------------------------------------------------------

# Lifetime of a join token, in seconds: long enough to load the client, short because a token
# cannot be revoked once issued.
JOIN_TOKEN_TTL_SECONDS = env_int("JOIN_TOKEN_TTL_SECONDS", 300, minimum=30)
if JOIN_TOKEN_TTL_SECONDS > 3600:
    raise ImproperlyConfigured("JOIN_TOKEN_TTL_SECONDS must be at most 3600 (one hour)")
# The join page opens this many minutes before an occurrence starts ...
JOIN_WINDOW_OPENS_MINUTES = env_int("JOIN_WINDOW_OPENS_MINUTES", 15, minimum=0)
# ... and closes this many minutes after it ends.
JOIN_GRACE_MINUTES = env_int("JOIN_GRACE_MINUTES", 15, minimum=0)

# --- Email ------------------------------------------------------------------------------------

EMAIL_DELIVERY = env_choice(
    "EMAIL_DELIVERY", "smtp" if PRODUCTION else "mailbox", ("smtp", "mailbox", "console")
)
EMAIL_BACKEND = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "mailbox": "visio_broker.mail.MailboxEmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
}[EMAIL_DELIVERY]
MAILBOX_PATH = VAR_DIR / "mail" / "outbox.mbox"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set at most one of EMAIL_USE_TLS and EMAIL_USE_SSL")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = _required("DEFAULT_FROM_EMAIL", env_str("DEFAULT_FROM_EMAIL")) or (
    f"Visio Broker <no-reply@{_site_host}>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = "[Visio Broker] "

# --- Authentication (django-allauth) ----------------------------------------------------------

AUTH_USER_MODEL = "agencies.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "agencies.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = EMAIL_SUBJECT_PREFIX
ACCOUNT_DEFAULT_HTTP_PROTOCOL = urlsplit(SITE_URL).scheme
# allauth has no on/off switch of its own: ACCOUNT_RATE_LIMITS = False turns every limit off.
if not env_bool("ACCOUNT_RATE_LIMITS_ENABLED", default=True):
    ACCOUNT_RATE_LIMITS = False
# Sign-up is closed: allauth's mail to unknown addresses would only invite them to sign up.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "Visio Broker")
# Session rows exist (deactivation ends them) but are not rewritten on every request.
USERSESSIONS_TRACK_ACTIVITY = False
# Reverse proxies in front of gunicorn, so rate limits count the client's address, not nginx's.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# Sessions live in the database (deactivation can end them), beside the signed-in user's id: one
# query reads a request's session, user and membership (agencies.sessions, agencies.middleware).
SESSION_ENGINE = "agencies.sessions"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=300)
SESSION_COOKIE_HTTPONLY = True

# --- Internationalisation ---------------------------------------------------------------------

LANGUAGE_CODE = "en"
# German and Dutch have catalogues under locale/ ready to be filled; they are offered once
# complete, so nobody is shown a half-translated interface.
LANGUAGES = [("en", _("English")), ("fr", _("French"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))).resolve()
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    # Whitenoise serves from the finders here, but warns on every start without this folder.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- REST API ---------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "visio_broker.api.ApiAutoSchema",
    # API views inherit visio_broker.api.ApiView, which sets key authentication, scopes and
    # throttling; the defaults below only guard a view that forgot to.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "visio_broker.negotiation.ApiContentNegotiation",
    "EXCEPTION_HANDLER": "visio_broker.api.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Requests per API key: "<count>/<s|m|h|d>", a fixed window shared by all web nodes (Redis).
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/m")
if not re.fullmatch(r"[1-9][0-9]*/[smhd]", API_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"API_RATE_LIMIT must look like 600/m (count per s, m, h or d), not {API_RATE_LIMIT!r}"
    )
SPECTACULAR_SETTINGS = {
    "TITLE": "Visio Broker API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Swagger UI served from our own static files: no third-party CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "DESCRIPTION": (
        "The REST API for agencies' own systems. Authenticate with "
        "`Authorization: Bearer <api key>`; each operation names the scope it needs. "
        "Errors are application/problem+json with a stable `code`. POST accepts an "
        "`Idempotency-Key`; single resources carry an `ETag` that PATCH and DELETE check "
        "through `If-Match`."
    ),
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Calendar feeds ---------------------------------------------------------------------------

# Requests per client address and window on /feeds/ (calendar clients poll every hour or less).
FEED_RATE_LIMIT = env_int("FEED_RATE_LIMIT", 120, minimum=1)
FEED_RATE_WINDOW = env_int("FEED_RATE_WINDOW", 600, minimum=1)

# --- Security ---------------------------------------------------------------------------------

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Error reports (mail to ADMINS, debug pages) never show a calendar feed's token.
DEFAULT_EXCEPTION_REPORTER_FILTER = "visio_broker.redaction.RedactingExceptionReporterFilter"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    if env_bool("TRUST_X_FORWARDED_PROTO", default=True):
        # gunicorn sits behind a TLS-terminating reverse proxy (deploy/nginx.conf).
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# Calendar feed URLs are capabilities: the filter rewrites /feeds/<token> in every record that
# reaches a handler, and on Django's request loggers before any handler (mail_admins included).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_feed_tokens": {"()": "visio_broker.redaction.RedactFeedTokens"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_feed_tokens"],
        },
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "filters": ["redact_feed_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["redact_feed_tokens"]},
        # runserver's access log, as Django configures it, with the filter.
        "django.server": {
            "handlers": ["server"],
            "level": "INFO",
            "propagate": False,
            "filters": ["redact_feed_tokens"],
        },
    },
}
