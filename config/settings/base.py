"""Settings shared by every environment.

Everything is declared here through environment variables with safe local defaults;
`production.py` only hardens, `test.py` only makes tests fast and deterministic.
"""

from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

# --- core ---------------------------------------------------------------------------------
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-only-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "tenancy.User"
# Passwords people choose (the studio's password-reset and invitation links, the admin): checked by
# Django's validators. Owners' accounts move money, so at least 10 characters.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("DARKROOM_PASSWORD_MIN_LENGTH", default=10)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

INSTALLED_APPS = [
    # Project apps first so their management commands (e.g. `flush`) take precedence.
    "apps.core",
    "apps.tenancy",
    "apps.ops",
    "apps.idempotency",
    "apps.outbox",
    "apps.ledger",
    "apps.catalog",
    "apps.commerce",
    "apps.payments",
    "apps.payouts",
    "apps.notifications",
    "apps.dropin",
    "apps.web",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
]

MIDDLEWARE = [
    # First: times and counts every answer, those of the middleware below included.
    "apps.ops.http_metrics.HttpMetricsMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.ApiNotFoundMiddleware",
    "apps.core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.tenancy.middleware.TenantContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy on every response (django-csp). Scripts only from this origin (htmx and
# the Swagger UI are served locally; no page has an inline script), no plugins, no framing, no
# <base> rewrites. Styles may be inline (the pages carry their own small stylesheets). Photo
# previews may come from the storage's host when it is not this origin: list it (or a CDN) in
# DARKROOM_CSP_IMG_HOSTS. Forms post only here; a checkout's redirect to the provider's page is
# a navigation, which `form-action` would also police in some browsers, so it is left unset.
CSP_IMG_HOSTS: list[str] = env.list("DARKROOM_CSP_IMG_HOSTS", default=[])
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", *CSP_IMG_HOSTS],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("DARKROOM_MEDIA_ROOT", default=BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "/admin/login/"

# --- databases ----------------------------------------------------------------------------
# `default` is the runtime role: not superuser, not owner, no BYPASSRLS; every process uses it.
# `owner` owns the tables; it runs migrations, partition maintenance and test flushes only.
# The admin URL (superuser) is used by `manage.py db_bootstrap` to create roles and database.
DATABASE_NAME = env("DARKROOM_DB_NAME", default="darkroom")


def _prepare_threshold(value: str) -> int | None:
    return None if value.strip().lower() in ("", "none", "off") else int(value)


DATABASES = {
    "default": {
        **env.db("DATABASE_URL", default=f"postgres://darkroom_app:darkroom_app@127.0.0.1:5432/{DATABASE_NAME}"),
        "ENGINE": "apps.core.db",
        "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
        # Server-side parameter binding, and prepared statements: psycopg prepares a statement
        # once it ran `prepare_threshold` times on a connection (Django turns this off unless it
        # is set), so hot statements are parsed once per connection, not once per request.
        # Set DATABASE_PREPARE_THRESHOLD=none behind a transaction-mode pooler (PgBouncer < 1.21).
        "OPTIONS": {
            "server_side_binding": env.bool("DATABASE_SERVER_SIDE_BINDING", default=True),
            "prepare_threshold": _prepare_threshold(env.str("DATABASE_PREPARE_THRESHOLD", default="5")),
        },
    },
    "owner": {
        **env.db(
            "DATABASE_OWNER_URL",
            default=f"postgres://darkroom_owner:darkroom_owner@127.0.0.1:5432/{DATABASE_NAME}",
        ),
        "ENGINE": "apps.core.db",
        "CONN_MAX_AGE": 0,
    },
}
DATABASE_ROUTERS = ["apps.core.db.routers.OwnerMigratesRouter"]
DATABASE_ADMIN_URL = env("DATABASE_ADMIN_URL", default="postgres://postgres@127.0.0.1:5432/postgres")
ATOMIC_REQUESTS = False  # services own their (durable) transactions; see STYLE.md

# --- cache and redis ----------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env("CACHE_URL", default="redis://127.0.0.1:6379/1"),
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        "KEY_PREFIX": "darkroom",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# A form's effect that rolls back takes its flash messages with it (apps/web/messages.py).
MESSAGE_STORAGE = "apps.web.messages.TransactionalMessageStorage"
# After a Redis call of the web fails, the process leaves Redis alone this long (rate limits let
# requests through, PostgreSQL decides API keys): a Redis that never answers costs a page one
# socket timeout per window, not one per call (apps/core/redis_guard.py).
REDIS_SKIP_SECONDS = env.float("DARKROOM_REDIS_SKIP_SECONDS", default=10.0)

# --- request limits -----------------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DARKROOM_MAX_BODY_BYTES", default=1_048_576)
API_MAX_BODY_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
# Multipart uploads (photo originals) stream to temp files; this caps the whole request.
API_MAX_UPLOAD_BYTES = env.int("DARKROOM_MAX_UPLOAD_BYTES", default=60 * 1024 * 1024)

# --- REST framework -----------------------------------------------------------------------
API_PAGE_SIZE = 50  # default `limit` of every paginated API list (at most apps.core.pagination.MAX_LIMIT)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenancy.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenancy.permissions.IsTenantMember"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.UnicodeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "apps.core.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.DarkroomAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": API_PAGE_SIZE,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Darkroom API",
    "DESCRIPTION": "Event-photography commerce: catalog, checkout, ledger, payouts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI assets are served locally (no CDN needed).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation's schema comes from apps.core.openapi.DarkroomAutoSchema (Idempotency-Key,
    # problem responses); `tests/core/test_openapi.py` keeps generation free of warnings.
    "ENUM_NAME_OVERRIDES": {"ProductKindEnum": "apps.catalog.models.ProductKind"},
    # A PATCH body is parsed with its serializer as declared (never `partial=True`): document
    # the fields it requires, not a `Patched...` copy with none (tests/core/test_openapi_patch_bodies.py).
    "COMPONENT_SPLIT_PATCH": False,
}

# --- celery -------------------------------------------------------------------------------
# At-least-once delivery: tasks ack after they finish and are re-queued when a worker dies,
# so every task must be idempotent. The visibility timeout must exceed every countdown/ETA
# the code uses (CELERY_MAX_COUNTDOWN_SECONDS), or Redis redelivers the task while it waits.
CELERY_MAX_COUNTDOWN_SECONDS = env.int("CELERY_MAX_COUNTDOWN_SECONDS", default=3600)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/2")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
# Kombu's Redis transport, reusing one redis-py client per channel (apps/core/broker_transport.py).
# Another broker URL scheme (amqp://...) keeps kombu's own transport for that scheme.
_BROKER_IS_REDIS = CELERY_BROKER_URL.split("://", 1)[0] in {"redis", "rediss"}
CELERY_BROKER_TRANSPORT = (
    env("CELERY_BROKER_TRANSPORT", default="apps.core.broker_transport:Transport" if _BROKER_IS_REDIS else "") or None
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=2 * CELERY_MAX_COUNTDOWN_SECONDS),
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep a worker's Django DB connection across tasks (Celery closes it after every task
# otherwise). Safe: tenant context is transaction-local, so nothing carries to the next task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_TASK_DEFAULT_QUEUE = "default"
# `providers`: every task that calls a payment provider's API (sessions, captures, refunds). Its
# own worker (Procfile `providers`) keeps a slow or unreachable provider from occupying the
# worker that decides stock, applies webhooks and sends receipts (a bulkhead).
PROVIDER_QUEUE = "providers"
DARKROOM_QUEUES = [
    "default",
    "outbox",
    "ledger",
    "payments",
    PROVIDER_QUEUE,
    "inventory",
    "notifications",
    "dropin",
    "maintenance",
]
CELERY_TASK_ROUTES = {
    "core.*": {"queue": "default"},
    "outbox.*": {"queue": "outbox"},
    "ledger.*": {"queue": "ledger"},
    "payments.*": {"queue": "payments"},
    "payouts.*": {"queue": "payments"},
    "inventory.*": {"queue": "inventory"},
    "notifications.*": {"queue": "notifications"},
    "dropin.*": {"queue": "dropin"},
    "maintenance.*": {"queue": "maintenance"},
}
CELERY_TASK_QUEUES = [Queue(name) for name in DARKROOM_QUEUES]
# Task modules are included explicitly (no autodiscovery): each domain has one under tasks/.
CELERY_IMPORTS = (
    "tasks.core",
    "tasks.idempotency",
    "tasks.outbox",
    "tasks.ledger",
    "tasks.catalog",
    "tasks.payments",
    "tasks.commerce",
    "tasks.inventory",
    "tasks.payouts",
    "tasks.notifications",
    "tasks.dropin",
    "tasks.tenancy",
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task events cost the worker's main process a Redis publish per task state (about 40 % of its
# CPU at a few hundred tasks/s). Off by default: Flower switches them on in every worker while it
# runs (its `enable_events` control broadcast). The task-sent event would double the relay's
# Redis writes; Flower then shows tasks from "received" on.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}
FLOWER_BASIC_AUTH = env("FLOWER_BASIC_AUTH", default="admin:darkroom-flower")
# `/metrics` wants `Authorization: Bearer <this>` when set; empty (local default) leaves it open.
METRICS_BEARER_TOKEN = env("DARKROOM_METRICS_TOKEN", default="")

# --- logging ------------------------------------------------------------------------------
LOG_LEVEL = env("DARKROOM_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "apps.core.logging.ContextFilter"},
        "redact_paths": {"()": "apps.core.logging.RedactSecretPaths"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(tenant_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        # The process's own stderr, never whatever `sys.stderr` is when this is applied: in a Celery
        # pool child that is Celery's LoggingProxy (stdout/stderr redirected to the `celery.redirected`
        # logger), and a handler writing into it sends every record back into the proxy, whose
        # recursion guard drops it. `django.setup()` applies this again in a child whenever a task
        # imports the task modules (`app.loader.import_default_modules()`), which silenced it for good.
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.__stderr__",
            "formatter": "json",
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Drop Django's default handlers on "django" (a plain-text console copy under DEBUG, mail to
        # ADMINS otherwise): its records propagate to the JSON console handler like every other.
        "django": {"handlers": [], "level": LOG_LEVEL},
        # Its records name the request's path, which may carry a token (apps/core/logging.py).
        "django.request": {"filters": ["redact_paths"]},
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- idempotency --------------------------------------------------------------------------
# Completed keys are replayed for this long. Never below 24 h: a lower value refuses to start
# (apps.idempotency.selectors.idempotency_retention).
IDEMPOTENCY_RETENTION_HOURS = env.int("DARKROOM_IDEMPOTENCY_RETENTION_HOURS", default=72)
# Day partitions kept ready ahead of today; a missing partition would fail every write closed.
IDEMPOTENCY_PARTITIONS_AHEAD_DAYS = env.int("DARKROOM_IDEMPOTENCY_PARTITIONS_AHEAD_DAYS", default=7)
IDEMPOTENCY_RETRY_AFTER_SECONDS = env.int("DARKROOM_IDEMPOTENCY_RETRY_AFTER_SECONDS", default=1)
# Partition DDL gives up rather than queue API writes behind it; the next run retries.
IDEMPOTENCY_DDL_LOCK_TIMEOUT_MS = env.int("DARKROOM_IDEMPOTENCY_DDL_LOCK_TIMEOUT_MS", default=5000)
CELERY_TASK_ROUTES["idempotency.*"] = {"queue": "maintenance"}
CELERY_BEAT_SCHEDULE["idempotency.maintain_partitions"] = {
    "task": "idempotency.maintain_partitions",
    "schedule": env.float("DARKROOM_IDEMPOTENCY_MAINTENANCE_INTERVAL_SECONDS", default=3600.0),
    "options": {"queue": "maintenance"},
}

# --- outbox -------------------------------------------------------------------------------
# Relay (`manage.py outbox_relay`): batch per claim transaction, poll fallback behind LISTEN.
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=200)
OUTBOX_POLL_INTERVAL_SECONDS = env.float("OUTBOX_POLL_INTERVAL_SECONDS", default=1.0)
# After a NOTIFY the relay waits this long before claiming, so one batch carries the messages of
# many commits (a burst of single-message commits otherwise costs one claim transaction each).
OUTBOX_RELAY_COALESCE_SECONDS = env.float("OUTBOX_RELAY_COALESCE_SECONDS", default=0.01)
# A message whose publish fails (no route, bad payload) is retried with exponential backoff and
# jitter (base · 2^(n-1), capped), and dead-lettered after OUTBOX_MAX_ATTEMPTS failures.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=10)
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=2.0)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=600.0)
# Published messages are kept this long for inspection, then deleted in bounded batches; inbox
# entries must outlive every redelivery (relay re-publish, visibility timeout, replay).
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=24)
OUTBOX_INBOX_RETENTION_HOURS = env.int("OUTBOX_INBOX_RETENTION_HOURS", default=7 * 24)
OUTBOX_CLEANUP_BATCH_SIZE = env.int("OUTBOX_CLEANUP_BATCH_SIZE", default=5000)
# Extra or overriding routes, {"topic": "task.name"} or {"topic": {"task": ..., "queue": ...}};
# consumers normally register themselves with @outbox_consumer (apps/outbox/routing.py).
OUTBOX_ROUTES: dict[str, str | dict[str, str]] = {}
# Lost messages (apps/outbox/requeue.py): a webhook event still `received`, a refund still
# `requested`, a photo still waiting for its render, a receipt still unsent, a capture not done,
# a checkout still reserving with its stock decided or still waiting for its payment session, an
# expired checkout's payment session close not yet concluded this
# long after its message was queued lost that message (the broker forgot it, e.g. a Redis
# restart); a beat task per flow queues it again,
# every REQUEUE_STALE_SWEEP_SECONDS (a run missed while workers were down expires, not piles up).
REQUEUE_STALE_AFTER_SECONDS = env.int("DARKROOM_REQUEUE_STALE_AFTER_SECONDS", default=600)
REQUEUE_STALE_SWEEP_SECONDS = env.float("DARKROOM_REQUEUE_STALE_SWEEP_SECONDS", default=60.0)
for _sweep, _queue in (
    ("payments.webhooks_requeue_stale", "payments"),
    ("payments.refunds_requeue_stale", "payments"),
    ("payments.captures_requeue_stale", "payments"),
    ("payouts.requeue_stale", "payments"),
    ("commerce.checkouts_requeue_stale", "default"),
    ("commerce.receipts_requeue_stale", "notifications"),
    ("notifications.deliveries_requeue_stale", "notifications"),
    ("catalog.derivatives_requeue_stale", "maintenance"),
    ("dropin.jobs_requeue_stale", "dropin"),
    ("dropin.faces_requeue_stale", "dropin"),
):
    CELERY_BEAT_SCHEDULE[_sweep] = {
        "task": _sweep,
        "schedule": REQUEUE_STALE_SWEEP_SECONDS,
        "options": {"queue": _queue, "expires": REQUEUE_STALE_SWEEP_SECONDS},
    }
# --- payouts --------------------------------------------------------------------------------
# A wallet is paid out once its projected balance reaches this many minor units (and it has a
# destination); it is paid its exact balance. One batch runs at a time (lease `payouts:batch`).
PAYOUT_MINIMUM_MINOR = env.int("DARKROOM_PAYOUT_MINIMUM_MINOR", default=1000)
PAYOUT_LEASE_TTL_SECONDS = env.float("DARKROOM_PAYOUT_LEASE_TTL_SECONDS", default=60.0)
PAYOUT_BATCH_EVERY_SECONDS = env.float("DARKROOM_PAYOUT_BATCH_EVERY_SECONDS", default=86400.0)
# One provider call per claim; longer than a call may take (its HTTP timeouts and the task's limit).
PAYOUT_SUBMIT_CLAIM_SECONDS = env.float("DARKROOM_PAYOUT_SUBMIT_CLAIM_SECONDS", default=120.0)
# A payout still unsent this long after it was made goes to an operator instead of the provider:
# Stripe keeps idempotency keys a day, PayPal a sender_batch_id 30 days.
PAYOUT_RETRY_WINDOW_HOURS = env.float("DARKROOM_PAYOUT_RETRY_WINDOW_HOURS", default=20.0)
# PayPal and Flutterwave settle a payout after the call: `payouts.settle_submitted` asks them
# about each submitted payout at most this often.
PAYOUT_SETTLE_EVERY_SECONDS = env.float("DARKROOM_PAYOUT_SETTLE_EVERY_SECONDS", default=900.0)
CELERY_BEAT_SCHEDULE["payouts.settle_submitted"] = {
    "task": "payouts.settle_submitted",
    "schedule": min(PAYOUT_SETTLE_EVERY_SECONDS, 300.0),
    "options": {"queue": PROVIDER_QUEUE, "expires": 300.0},
}
CELERY_BEAT_SCHEDULE["payouts.batch_run"] = {
    "task": "payouts.batch_run",
    "schedule": PAYOUT_BATCH_EVERY_SECONDS,
    "options": {"queue": "payments", "expires": PAYOUT_BATCH_EVERY_SECONDS},
}
# Lost messages of the flows that have no waiting row (apps/outbox/unconsumed.py): a published
# message whose consumer has not recorded its inbox row this long after publishing is sent again,
# at most OUTBOX_LOST_MESSAGE_MAX_REQUEUES times and while it is younger than the retention.
# Longer than a mail consumer's own retries take (about 40 minutes), so it rarely doubles one.
OUTBOX_LOST_MESSAGE_AFTER_SECONDS = env.int("OUTBOX_LOST_MESSAGE_AFTER_SECONDS", default=2700)
OUTBOX_LOST_MESSAGE_MAX_REQUEUES = env.int("OUTBOX_LOST_MESSAGE_MAX_REQUEUES", default=5)
OUTBOX_LOST_MESSAGE_BATCH_SIZE = env.int("OUTBOX_LOST_MESSAGE_BATCH_SIZE", default=500)
CELERY_BEAT_SCHEDULE["outbox.requeue_unconsumed"] = {
    "task": "outbox.requeue_unconsumed",
    "schedule": env.float("OUTBOX_LOST_MESSAGE_SWEEP_SECONDS", default=300.0),
    "options": {"queue": "maintenance", "expires": 300.0},
}
CELERY_BEAT_SCHEDULE["outbox.cleanup"] = {
    "task": "outbox.cleanup",
    "schedule": env.float("OUTBOX_CLEANUP_EVERY_SECONDS", default=600.0),
    "options": {"queue": "maintenance", "expires": 600},
}

# --- announcements ------------------------------------------------------------------------
# The fan-out writes this many deliveries (and their notifications) per transaction, and one
# e-mail message per chunk; each e-mail chunk is one sender task over one mail connection.
ANNOUNCEMENT_FANOUT_CHUNK = env.int("DARKROOM_ANNOUNCEMENT_FANOUT_CHUNK", default=1000)
# One fan-out task writes chunks for at most this long, then queues its continuation (well
# inside CELERY_TASK_SOFT_TIME_LIMIT).
ANNOUNCEMENT_FANOUT_SLICE_SECONDS = env.float("DARKROOM_ANNOUNCEMENT_FANOUT_SLICE_SECONDS", default=20.0)
ANNOUNCEMENT_LEASE_TTL_SECONDS = env.float("DARKROOM_ANNOUNCEMENT_LEASE_TTL_SECONDS", default=60.0)
# The mail server of Django's SMTP backend (production's default; local uses the console).
EMAIL_HOST = env("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# How announcement e-mails leave (apps/notifications/mailers.py): "django" (the mail backend
# above, one message at a time) or "postmark" (its batch API, 500 per request; production needs
# the server token; the message stream must be a broadcast stream).
ANNOUNCEMENT_MAILER = env("DARKROOM_ANNOUNCEMENT_MAILER", default="django")
POSTMARK_API_URL = env("POSTMARK_API_URL", default="https://api.postmarkapp.com")
POSTMARK_SERVER_TOKEN = env("POSTMARK_SERVER_TOKEN", default="")
POSTMARK_MESSAGE_STREAM = env("POSTMARK_MESSAGE_STREAM", default="broadcast")
ANNOUNCEMENT_FROM_EMAIL = env("DARKROOM_ANNOUNCEMENT_FROM_EMAIL", default="news@darkroom.localhost")
# A sender claims, sends and records this many e-mails at a time (Postmark takes 500 a request).
ANNOUNCEMENT_EMAIL_BATCH = env.int("DARKROOM_ANNOUNCEMENT_EMAIL_BATCH", default=250)
# A sender's claim on a batch of e-mails; longer than sending a batch may take.
ANNOUNCEMENT_EMAIL_CLAIM_SECONDS = env.float("DARKROOM_ANNOUNCEMENT_EMAIL_CLAIM_SECONDS", default=300.0)
# An e-mail the mail server keeps refusing for a passing reason fails after this many attempts.
ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS = env.int("DARKROOM_ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS", default=5)

# --- edge protection ----------------------------------------------------------------------
# Per (tenant, caller, endpoint) sliding-window limit on every API view (apps/ops/ratelimit.py):
# "<n>/<s|min|hour>", e.g. "600/min" or "1000/10s"; DARKROOM_RATE_LIMITS overrides per URL name
# of an API endpoint ("checkout-create=120/min,event-selfies=30/min"; any other name is the
# system check error ops.E002).
# Over it: 429 with Retry-After.
# The reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client for
# rate limits and logs (apps/core/client_address.py); empty: the socket's peer is the client.
TRUSTED_PROXIES = env.list("DARKROOM_TRUSTED_PROXIES", default=[])
RATE_LIMIT_ENABLED = env.bool("DARKROOM_RATE_LIMIT_ENABLED", default=True)
RATE_LIMIT_DEFAULT = env("DARKROOM_RATE_LIMIT_DEFAULT", default="6000/min")
RATE_LIMITS: dict[str, str] = env.dict("DARKROOM_RATE_LIMITS", default={})
# Webhook deliveries that fail verification, per provider and client address; over it, they get
# 429 instead of 400. Deliveries that verify never count and are never refused by it; only a
# PayPal delivery whose verification would fetch a certificate waits for it (apps/payments/apis.py).
WEBHOOK_REFUSAL_RATE = env("DARKROOM_WEBHOOK_REFUSAL_RATE", default="60/min")
# Kill switches (apps/ops/killswitch.py): an engaged switch stays engaged this long unless
# released with force; every process sees a change within the cache time; a refused checkout
# says to retry after this many seconds.
KILL_SWITCH_COOLDOWN_SECONDS = env.float("DARKROOM_KILL_SWITCH_COOLDOWN_SECONDS", default=300.0)
KILL_SWITCH_CACHE_SECONDS = env.float("DARKROOM_KILL_SWITCH_CACHE_SECONDS", default=1.0)
KILL_SWITCH_RETRY_AFTER_SECONDS = env.int("DARKROOM_KILL_SWITCH_RETRY_AFTER_SECONDS", default=60)

# --- drop-in ------------------------------------------------------------------------------
# Every new photo gets a drop-in job (DROPIN_ENABLED); a worker on the `dropin` queue (its own
# process in the Procfile: face detection is CPU-heavy and must not hold up payments) finds the
# faces and matches them against the event's registered selfies.
DROPIN_ENABLED = env.bool("DARKROOM_DROPIN_ENABLED", default=True)
# "local" (dlib, offline; the default), "rekognition" (AWS; credentials from the usual AWS
# environment or instance role) or "fake" (tests: faces read from image metadata).
DROPIN_FACE_BACKEND = env("DARKROOM_DROPIN_FACE_BACKEND", default="local")
# Similarity (0..1) a face must reach to match a selfie; unset: each backend's calibrated value
# (local 0.4, i.e. dlib's 0.6 distance; rekognition 0.9; fake 0.5). The scales differ: set it
# only together with the backend.
DROPIN_MATCH_THRESHOLD = env.float("DARKROOM_DROPIN_MATCH_THRESHOLD", default=None)
# Only the largest faces of a photo are searched (each one is a billable search).
DROPIN_MAX_FACES_PER_PHOTO = env.int("DARKROOM_DROPIN_MAX_FACES_PER_PHOTO", default=50)
# The local backend detects faces on a copy downscaled to this many pixels on its longer side
# (about 0.6 s of CPU per 2,000 px photo here); boxes are reported in the original's pixels.
DROPIN_LOCAL_MAX_IMAGE_SIDE = env.int("DARKROOM_DROPIN_LOCAL_MAX_IMAGE_SIDE", default=2000)
AWS_REGION = env("AWS_REGION", default="eu-west-1")
DROPIN_REKOGNITION_FACE_MATCH_THRESHOLD = env.float("DARKROOM_DROPIN_REKOGNITION_FACE_MATCH_THRESHOLD", default=90.0)
DROPIN_REKOGNITION_COLLECTION_PREFIX = env("DARKROOM_DROPIN_REKOGNITION_COLLECTION_PREFIX", default="darkroom")
DROPIN_MAX_SELFIE_BYTES = env.int("DARKROOM_DROPIN_MAX_SELFIE_BYTES", default=10 * 1024 * 1024)
# Selfies an attendee may send from their drop-in page (each is an enrolment at the face
# backend, paid with Rekognition), per signed link; over it the page answers 429.
DROPIN_SELFIE_PAGE_RATE = env("DARKROOM_DROPIN_SELFIE_PAGE_RATE", default="10/hour")
# Requests per client address across the attendee's signed-link pages (inbox, mark read,
# unsubscribe, drop-in); over it they answer 429 (apps/notifications/limits.py).
ATTENDEE_PAGE_RATE = env("DARKROOM_ATTENDEE_PAGE_RATE", default="120/min")
# A job whose runs raised this many times fails for good (an operator can queue it again).
DROPIN_MAX_ATTEMPTS = env.int("DARKROOM_DROPIN_MAX_ATTEMPTS", default=5)
DROPIN_LEASE_TTL_SECONDS = env.float("DARKROOM_DROPIN_LEASE_TTL_SECONDS", default=120.0)
# Each face search is billed to the studio: a debit of searches x this price (minor units) on
# its usage account in this currency, once per job.
DROPIN_SEARCH_PRICE_MINOR = env.int("DARKROOM_DROPIN_SEARCH_PRICE_MINOR", default=1)
DROPIN_USAGE_CURRENCY = env("DARKROOM_DROPIN_USAGE_CURRENCY", default="EUR")
# "Find me" (apps/dropin/findme.py): a shopper's selfie is compared with at most this many
# indexed faces of the event (the oldest first; the local backend reads their descriptors from
# Postgres: about 50 MB and 1.1 s per search at 100,000 faces on the 2-core dev box), read this
# many per query.
# Matching uses the drop-in threshold (DROPIN_MATCH_THRESHOLD or the backend's own).
FINDME_MAX_FACES = env.int("DARKROOM_FINDME_MAX_FACES", default=100_000)
FINDME_BATCH_SIZE = env.int("DARKROOM_FINDME_BATCH_SIZE", default=5_000)
# E-mail alerts of new photos, for attendees who asked for them (apps/notifications/photo_alerts.py):
# the first match makes one owed this long later (one burst of uploads, one e-mail), and never
# sooner than the minimum interval after the last one. The beat task sends what is owed every
# sweep interval, this many per claim; a claim lapses after its seconds (its sender died); an
# e-mail the mail server keeps failing for a passing reason is given up after the attempts.
DROPIN_ALERT_DELAY_SECONDS = env.float("DARKROOM_DROPIN_ALERT_DELAY_SECONDS", default=300.0)
DROPIN_ALERT_MIN_INTERVAL_SECONDS = env.float("DARKROOM_DROPIN_ALERT_MIN_INTERVAL_SECONDS", default=3600.0)
DROPIN_ALERT_SWEEP_SECONDS = env.float("DARKROOM_DROPIN_ALERT_SWEEP_SECONDS", default=30.0)
DROPIN_ALERT_BATCH = env.int("DARKROOM_DROPIN_ALERT_BATCH", default=250)
DROPIN_ALERT_CLAIM_SECONDS = env.float("DARKROOM_DROPIN_ALERT_CLAIM_SECONDS", default=300.0)
DROPIN_ALERT_MAX_ATTEMPTS = env.int("DARKROOM_DROPIN_ALERT_MAX_ATTEMPTS", default=5)
DROPIN_ALERT_FROM_EMAIL = env("DARKROOM_DROPIN_ALERT_FROM_EMAIL", default=ANNOUNCEMENT_FROM_EMAIL)
CELERY_BEAT_SCHEDULE["notifications.photo_alerts_send"] = {
    "task": "notifications.photo_alerts_send",
    "schedule": DROPIN_ALERT_SWEEP_SECONDS,
    "options": {"expires": DROPIN_ALERT_SWEEP_SECONDS},
}

# --- locks --------------------------------------------------------------------------------

# --- ledger -------------------------------------------------------------------------------
# Logical partitions (projector units): crc32(tenant) % P; whale tenants (slugs or ids) spread
# by crc32(tenant:client). Change either only as apps/ledger/partitioning.py describes.
LEDGER_PARTITIONS = env.int("LEDGER_PARTITIONS", default=16)
LEDGER_WHALE_TENANTS = env.list("LEDGER_WHALE_TENANTS", default=[])
# off | on (debits go to the fallback buffer) | auto (buffer when the partition lock waits
# longer than LEDGER_AUTO_DEGRADE_LOCK_TIMEOUT_MS); the drain moves them at LEDGER_DRAIN_RATE/s.
LEDGER_DEGRADED_MODE = env("LEDGER_DEGRADED_MODE", default="off")
LEDGER_AUTO_DEGRADE_LOCK_TIMEOUT_MS = env.int("LEDGER_AUTO_DEGRADE_LOCK_TIMEOUT_MS", default=250)
LEDGER_DRAIN_RATE = env.float("LEDGER_DRAIN_RATE", default=2000.0)
LEDGER_DRAIN_BATCH = env.int("LEDGER_DRAIN_BATCH", default=500)
LEDGER_PROJECTOR_BATCH = env.int("LEDGER_PROJECTOR_BATCH", default=5000)
LEDGER_PROJECTOR_POLL_SECONDS = env.float("LEDGER_PROJECTOR_POLL_SECONDS", default=0.05)
LEDGER_PROJECTOR_REBALANCE_SECONDS = env.float("LEDGER_PROJECTOR_REBALANCE_SECONDS", default=1.0)
# Physical monthly partitions of ledger events: created this many months ahead; months older
# than LEDGER_RETENTION_MONTHS are archived (folded + optional CSV export) and dropped once
# fully projected. 0 keeps every month.
LEDGER_PARTITIONS_AHEAD = env.int("LEDGER_PARTITIONS_AHEAD", default=3)
LEDGER_RETENTION_MONTHS = env.int("LEDGER_RETENTION_MONTHS", default=0)
LEDGER_ARCHIVE_DIR = env("LEDGER_ARCHIVE_DIR", default="")
CELERY_BEAT_SCHEDULE.update(
    {
        "ledger.partitions_maintain": {"task": "ledger.partitions_maintain", "schedule": 3600.0},
        "ledger.archive": {"task": "ledger.archive", "schedule": 86400.0},
        "ledger.buffer_drain": {"task": "ledger.buffer_drain", "schedule": 5.0},
    }
)

# --- catalog ------------------------------------------------------------------------------
# Photos go through the `default` storage (STORAGES above): originals under the private prefix
# (never given a URL; served later only through an entitlement's signed download), previews
# and thumbnails under the public prefix (their storage URL is what the API returns).
# Only MEDIA_ROOT/<public prefix> may ever be served as static media.
# Production, S3-compatible (django-storages is not a dependency yet; add `django-storages[s3]`):
#   STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
#       "bucket_name": env("DARKROOM_S3_BUCKET"), "endpoint_url": env("DARKROOM_S3_ENDPOINT_URL"),
#       "default_acl": None, "querystring_auth": False, "file_overwrite": True}}
#   with a bucket policy that allows public reads of `<public prefix>/*` only.
CATALOG_PRIVATE_PREFIX = env("DARKROOM_CATALOG_PRIVATE_PREFIX", default="private")
CATALOG_PUBLIC_PREFIX = env("DARKROOM_CATALOG_PUBLIC_PREFIX", default="public")
# Serve the public derivatives at MEDIA_URL/<public prefix>/ from the app (apps/catalog/views.py),
# for a storage with no web server of its own (the filesystem of `make run`); turn it off when the
# storage's URLs point elsewhere (S3, a CDN).
SERVE_PUBLIC_MEDIA = env.bool("DARKROOM_SERVE_PUBLIC_MEDIA", default=True)
CATALOG_PREVIEW_MAX_PX = env.int("DARKROOM_CATALOG_PREVIEW_MAX_PX", default=1600)
CATALOG_THUMBNAIL_MAX_PX = env.int("DARKROOM_CATALOG_THUMBNAIL_MAX_PX", default=400)
CATALOG_DERIVATIVE_JPEG_QUALITY = env.int("DARKROOM_CATALOG_DERIVATIVE_JPEG_QUALITY", default=85)
CATALOG_UPLOAD_FORMATS = env.list("DARKROOM_CATALOG_UPLOAD_FORMATS", default=["JPEG", "PNG", "WEBP"])
CATALOG_MAX_UPLOAD_BYTES = env.int("DARKROOM_CATALOG_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
CATALOG_MAX_IMAGE_PIXELS = env.int("DARKROOM_CATALOG_MAX_IMAGE_PIXELS", default=100_000_000)
# An upload stores its original before any transaction opens and deletes it when its photo does
# not commit; what a crash leaves behind, the hourly sweep deletes once it is this old (never
# below 1 h: an upload still in flight must keep its file).
CATALOG_ORPHAN_GRACE_HOURS = max(1, env.int("DARKROOM_CATALOG_ORPHAN_GRACE_HOURS", default=24))
CELERY_BEAT_SCHEDULE["catalog.sweep_orphan_originals"] = {
    "task": "catalog.sweep_orphan_originals",
    "schedule": env.float("DARKROOM_CATALOG_ORPHAN_SWEEP_EVERY_SECONDS", default=3600.0),
    "options": {"queue": "maintenance", "expires": 3600},
}

# --- payments -----------------------------------------------------------------------------
# Provider credentials come from the environment; the defaults only let a laptop run (they are
# public, so production.py must require real values). Webhook secrets are lists where the
# provider signs with several during a rotation.
# Where `make run`'s gunicorn listens (the Procfile reads the same variable); the default public
# address follows its port, so links and the sandbox's webhooks reach this instance.
DARKROOM_WEB_BIND = env("DARKROOM_WEB_BIND", default="127.0.0.1:8000")
_WEB_PORT = DARKROOM_WEB_BIND.rsplit(":", 1)[-1] if DARKROOM_WEB_BIND.rsplit(":", 1)[-1].isdigit() else "8000"
DARKROOM_PUBLIC_BASE_URL = env("DARKROOM_PUBLIC_BASE_URL", default=f"http://127.0.0.1:{_WEB_PORT}")
PAYMENTS_HTTP_TIMEOUT_SECONDS = env.float("PAYMENTS_HTTP_TIMEOUT_SECONDS", default=10.0)
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="sk_test_darkroom_local")
STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRETS", default=["whsec_darkroom_local"])
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
FLUTTERWAVE_SECRET_KEY = env("FLUTTERWAVE_SECRET_KEY", default="FLWSECK_TEST-darkroom-local-X")
FLUTTERWAVE_SECRET_HASH = env("FLUTTERWAVE_SECRET_HASH", default="darkroom-local-flutterwave-hash")
FLUTTERWAVE_API_BASE = env("FLUTTERWAVE_API_BASE", default="https://api.flutterwave.com/v3")
PAYPAL_CLIENT_ID = env("PAYPAL_CLIENT_ID", default="darkroom-local-client")
PAYPAL_CLIENT_SECRET = env("PAYPAL_CLIENT_SECRET", default="darkroom-local-secret")
PAYPAL_WEBHOOK_ID = env("PAYPAL_WEBHOOK_ID", default="darkroom-local-webhook")
PAYPAL_API_BASE = env("PAYPAL_API_BASE", default="https://api-m.sandbox.paypal.com")
# Certificates for webhook signatures are fetched only from these hosts, over https.
PAYPAL_CERT_HOSTS = env.list("PAYPAL_CERT_HOSTS", default=["api.paypal.com", "api.sandbox.paypal.com"])
PAYPAL_CERT_CACHE_SECONDS = env.int("PAYPAL_CERT_CACHE_SECONDS", default=24 * 3600)
SANDBOX_WEBHOOK_SECRET = env("SANDBOX_WEBHOOK_SECRET", default="sandbox-darkroom-local")
SANDBOX_WEBHOOK_TOLERANCE_SECONDS = env.int("SANDBOX_WEBHOOK_TOLERANCE_SECONDS", default=300)
SANDBOX_WEBHOOK_URL = env("SANDBOX_WEBHOOK_URL", default=f"{DARKROOM_PUBLIC_BASE_URL}/webhooks/sandbox")
# Misbehaviour on purpose: each event delivered N times, in shuffled order, this much later.
SANDBOX_WEBHOOK_DUPLICATES = env.int("SANDBOX_WEBHOOK_DUPLICATES", default=1)
SANDBOX_WEBHOOK_SHUFFLE = env.bool("SANDBOX_WEBHOOK_SHUFFLE", default=False)
SANDBOX_WEBHOOK_DELAY_SECONDS = env.float("SANDBOX_WEBHOOK_DELAY_SECONDS", default=0.0)

# --- commerce -----------------------------------------------------------------------------
# Stock for print lines: "batched" (default: the checkout inserts a pending reservation, one
# fenced writer per SKU decides; see "inventory" below), "row_lock" (SELECT ... FOR UPDATE in the
# checkout transaction, the baseline) or any other name listed in INVENTORY_STRATEGY_CLASSES.
INVENTORY_STRATEGY = env("DARKROOM_INVENTORY_STRATEGY", default="batched")
INVENTORY_STRATEGY_CLASSES: dict[str, str] = {
    "row_lock": "apps.commerce.inventory.RowLockStrategy",
    "batched": "apps.commerce.batched.BatchedStrategy",
}
# An unpaid checkout (and its reservations) expires this long after creation; the sweep runs
# every COMMERCE_EXPIRE_EVERY_SECONDS and releases stock in batches of COMMERCE_EXPIRE_BATCH_SIZE.
INVENTORY_RESERVATION_TTL_SECONDS = env.int("DARKROOM_INVENTORY_RESERVATION_TTL_SECONDS", default=15 * 60)
COMMERCE_EXPIRE_BATCH_SIZE = env.int("DARKROOM_COMMERCE_EXPIRE_BATCH_SIZE", default=200)
CHECKOUT_MAX_LINES = env.int("DARKROOM_CHECKOUT_MAX_LINES", default=50)
CHECKOUT_MAX_PRINT_QUANTITY = env.int("DARKROOM_CHECKOUT_MAX_PRINT_QUANTITY", default=20)
# Where the provider sends the shopper back (`{checkout_id}` is filled in).
CHECKOUT_RETURN_URL = env(
    "DARKROOM_CHECKOUT_RETURN_URL", default=f"{DARKROOM_PUBLIC_BASE_URL}/sandbox/checkouts/{{checkout_id}}"
)
# Provider-session creation (outbox consumer) retries provider errors this often, with backoff.
CHECKOUT_SESSION_MAX_RETRIES = env.int("DARKROOM_CHECKOUT_SESSION_MAX_RETRIES", default=5)
# Platform fee in basis points, kept from each sale line before the photographer's wallet credit.
PLATFORM_FEE_BPS = env.int("DARKROOM_PLATFORM_FEE_BPS", default=1000)
# Signed download links of entitlements live this long.
DOWNLOAD_URL_MAX_AGE_SECONDS = env.int("DARKROOM_DOWNLOAD_URL_MAX_AGE_SECONDS", default=24 * 3600)
# Download links per page: the entitlements API's `downloads_limit` (its default and maximum)
# and the shop's order page (`?downloads_page=`); an event's every photo is reachable by paging.
ENTITLEMENT_BULK_DOWNLOADS_LIMIT = env.int("DARKROOM_ENTITLEMENT_BULK_DOWNLOADS_LIMIT", default=500)
SHOP_DOWNLOADS_PER_PAGE = env.int("DARKROOM_SHOP_DOWNLOADS_PER_PAGE", default=100)
RECEIPT_FROM_EMAIL = env("DARKROOM_RECEIPT_FROM_EMAIL", default="receipts@darkroom.localhost")
# A receipt claimed by a sender that died is retried after this long.
RECEIPT_CLAIM_SECONDS = env.int("DARKROOM_RECEIPT_CLAIM_SECONDS", default=120)
# The stale-receipt sweep gives up on a receipt after this many send attempts (three retry
# chains of the consumer); it then stays `pending` with its `last_error` for an operator.
RECEIPT_MAX_ATTEMPTS = env.int("DARKROOM_RECEIPT_MAX_ATTEMPTS", default=30)
# Webhook processing (outbox consumer) retries this often before leaving the event `failed`.
WEBHOOK_PROCESS_MAX_RETRIES = env.int("DARKROOM_WEBHOOK_PROCESS_MAX_RETRIES", default=5)
# The sandbox provider as a whole: checkouts with provider "sandbox", its pay page and
# /webhooks/sandbox. Production must turn it off (its default webhook secret is public).
SANDBOX_ENABLED = env.bool("DARKROOM_SANDBOX_ENABLED", default=True)
# Transport of sandbox webhook deliveries (dotted path of an HttpTransport class); empty = HTTP.
SANDBOX_WEBHOOK_TRANSPORT = env("DARKROOM_SANDBOX_WEBHOOK_TRANSPORT", default="")
CELERY_BEAT_SCHEDULE["commerce.checkouts_expire"] = {
    "task": "commerce.checkouts_expire",
    "schedule": env.float("DARKROOM_COMMERCE_EXPIRE_EVERY_SECONDS", default=30.0),
    "options": {"expires": 60},
}

# --- inventory ----------------------------------------------------------------------------
# Hot stock (apps/commerce/batched/), the default INVENTORY_STRATEGY ("batched"): a checkout
# inserts a pending reservation and one fenced writer per SKU decides in batches;
# DARKROOM_INVENTORY_STRATEGY=row_lock selects the per-request row-lock baseline.
# Reservations decided per writer transaction (one stock UPDATE each).
INVENTORY_BATCH_SIZE = env.int("DARKROOM_INVENTORY_BATCH_SIZE", default=50)
# The writer's Redis lock TTL (extended every third of it while it works), the time one drain
# task may hold the SKU before handing over through a fresh wake-up (below the Celery soft time
# limit), and how long it waits between looks while checkouts of the SKU are still committing.
INVENTORY_WRITER_LOCK_TTL_SECONDS = env.float("DARKROOM_INVENTORY_WRITER_LOCK_TTL_SECONDS", default=30.0)
INVENTORY_DRAIN_MAX_SECONDS = env.float("DARKROOM_INVENTORY_DRAIN_MAX_SECONDS", default=20.0)
INVENTORY_WRITER_POLL_SECONDS = env.float("DARKROOM_INVENTORY_WRITER_POLL_SECONDS", default=0.005)
# After a batch that was not full (the writer has caught up), wait this long for more
# reservations before the next batch: under steady load one batch then carries what arrived
# meanwhile instead of one transaction per reservation. Adds at most this much to a decision's
# latency; 0 turns it off.
INVENTORY_WRITER_LINGER_SECONDS = env.float("DARKROOM_INVENTORY_WRITER_LINGER_SECONDS", default=0.01)
# Last resort: wake the writer of any SKU whose pending reservations are older than this.
INVENTORY_SWEEP_MIN_AGE_SECONDS = env.float("DARKROOM_INVENTORY_SWEEP_MIN_AGE_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["inventory.sweep"] = {
    "task": "inventory.sweep",
    "schedule": env.float("DARKROOM_INVENTORY_SWEEP_EVERY_SECONDS", default=10.0),
    "options": {"queue": "inventory", "expires": 30},
}
# Operator page (/ops/inventory): drain rate over this window.
INVENTORY_OPS_RATE_WINDOW_SECONDS = env.int("DARKROOM_INVENTORY_OPS_RATE_WINDOW_SECONDS", default=60)

# --- shop pages (apps/web/shop) -------------------------------------------------------------
# Payment providers the checkout form offers; empty: the sandbox alone where SANDBOX_ENABLED,
# else Stripe, Flutterwave and PayPal.
SHOP_PAYMENT_PROVIDERS = env.list("DARKROOM_SHOP_PAYMENT_PROVIDERS", default=[]) or None
# Access-code attempts per event and client address; selfie searches per event and session,
# and per event and client address. Rate syntax as RATE_LIMITS ("N/min", "N/5min", ...).
# A client address is an IPv4 address or an IPv6 /64.
SHOP_ACCESS_CODE_RATE = env("DARKROOM_SHOP_ACCESS_CODE_RATE", default="10/5min")
# Wrong access codes per event from all addresses; once spent, every attempt at the event's code
# is refused (sessions that entered it keep their access) until the window slides past them.
# Generous: a large event's attendees mistype codes by the hundred in its first hour, and a spent
# budget locks every newcomer out; it bounds a guesser spread over many networks (one network is
# held to SHOP_ACCESS_CODE_RATE).
SHOP_ACCESS_CODE_EVENT_RATE = env("DARKROOM_SHOP_ACCESS_CODE_EVENT_RATE", default="1000/hour")
SHOP_FINDME_SESSION_RATE = env("DARKROOM_SHOP_FINDME_SESSION_RATE", default="6/min")
SHOP_FINDME_ADDRESS_RATE = env("DARKROOM_SHOP_FINDME_ADDRESS_RATE", default="30/min")
SHOP_FINDME_MAX_BYTES = env.int("DARKROOM_SHOP_FINDME_MAX_BYTES", default=DROPIN_MAX_SELFIE_BYTES)
# "Find my orders" requests per studio and client address, and per studio and e-mail address
# asked about (each request may send that address an e-mail).
SHOP_ORDER_LOOKUP_ADDRESS_RATE = env("DARKROOM_SHOP_ORDER_LOOKUP_ADDRESS_RATE", default="10/hour")
SHOP_ORDER_LOOKUP_EMAIL_RATE = env("DARKROOM_SHOP_ORDER_LOOKUP_EMAIL_RATE", default="3/hour")
# A session asking again about an address it asked about this recently (its e-mail is likely still
# on its way: mail servers greylist for minutes) gets the "sent" page again: nothing counted or
# sent. 0: every request counts.
SHOP_ORDER_LOOKUP_REPEAT_SECONDS = env.int("DARKROOM_SHOP_ORDER_LOOKUP_REPEAT_SECONDS", default=600)
# Orders placed (checkout forms that reach the order) per studio and client address and per
# studio and session, and how many unpaid checkouts (reserving or awaiting payment) one session
# may hold at a studio before it must pay for or let lapse one of them: each holds stock.
# Per client address (an IPv6 /64): generous, since a venue's Wi-Fi or a mobile carrier's NAT puts
# many shoppers behind one IPv4 address; the per-session rate and open-checkout cap hold one buyer.
# The open-checkout cap is counted in the database under the session's lock (race-free).
SHOP_CHECKOUT_ADDRESS_RATE = env("DARKROOM_SHOP_CHECKOUT_ADDRESS_RATE", default="200/hour")
SHOP_CHECKOUT_SESSION_RATE = env("DARKROOM_SHOP_CHECKOUT_SESSION_RATE", default="10/hour")
SHOP_OPEN_CHECKOUTS_PER_SESSION = env.int("DARKROOM_SHOP_OPEN_CHECKOUTS_PER_SESSION", default=3)
# Print stock held by unpaid checkouts per client network (an IPv4 address or an IPv6 /64; the
# shop's, and the API's when it passes `shopper_ip`), whatever its sessions: its open checkouts
# may hold this percentage of a print's stock (`initial_quantity`, at least one unit) at once.
# A share, not a small number: a venue's Wi-Fi or a carrier's NAT is one network for hundreds of
# shoppers, who pay within minutes (paid units no longer count). 0 turns it off.
SHOP_NETWORK_PRINT_HOLD_PERCENT = env.int("DARKROOM_SHOP_NETWORK_PRINT_HOLD_PERCENT", default=50)
# Units a network let lapse unpaid count as still held by it for this long while what is left of
# the print would not cover them too, so a client cannot take a scarce print straight back each
# time its reservation lapses (re-hoarding). 0 turns it off.
SHOP_NETWORK_LAPSED_HOLD_SECONDS = env.int("DARKROOM_SHOP_NETWORK_LAPSED_HOLD_SECONDS", default=30 * 60)

# --- studio dashboard (apps/web/studio) -----------------------------------------------------
# Sign-in attempts per username and per client address (each attempt counts).
STUDIO_LOGIN_RATE = env("DARKROOM_STUDIO_LOGIN_RATE", default="10/5min")
STUDIO_LOGIN_ADDRESS_RATE = env("DARKROOM_STUDIO_LOGIN_ADDRESS_RATE", default="30/5min")
# Password-reset requests per e-mail address and per client address (each request counts), the
# address its e-mails come from, and how long a reset link works.
STUDIO_PASSWORD_RESET_EMAIL_RATE = env("DARKROOM_STUDIO_PASSWORD_RESET_EMAIL_RATE", default="3/hour")
STUDIO_PASSWORD_RESET_ADDRESS_RATE = env("DARKROOM_STUDIO_PASSWORD_RESET_ADDRESS_RATE", default="10/hour")
STUDIO_PASSWORD_RESET_FROM_EMAIL = env("DARKROOM_STUDIO_PASSWORD_RESET_FROM_EMAIL", default="studio@darkroom.localhost")
PASSWORD_RESET_TIMEOUT = env.int("DARKROOM_PASSWORD_RESET_TIMEOUT_SECONDS", default=2 * 60 * 60)
# A studio's invitation can be accepted for this many days after it was (last) sent (1 to 365;
# `apps/tenancy/checks.py` refuses others at start-up); inviting the address again renews it. An
# expired invitation stays on the studio's members page, marked expired, for
# STUDIO_INVITATION_EXPIRED_KEEP_DAYS more (0 to 365), then `tenancy.invitations_cleanup` deletes it.
STUDIO_INVITATION_TTL_DAYS = env.int("DARKROOM_STUDIO_INVITATION_TTL_DAYS", default=14)
STUDIO_INVITATION_EXPIRED_KEEP_DAYS = env.int("DARKROOM_STUDIO_INVITATION_EXPIRED_KEEP_DAYS", default=30)
CELERY_BEAT_SCHEDULE["tenancy.invitations_cleanup"] = {
    "task": "tenancy.invitations_cleanup",
    "schedule": env.float("DARKROOM_STUDIO_INVITATION_CLEANUP_EVERY_SECONDS", default=3600.0),
    "options": {"queue": "maintenance", "expires": 3600},
}
