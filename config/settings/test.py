"""Tests: real Postgres and Redis, fast hashing, in-memory email and storage.

Each pytest-xdist worker (and each checkout, through DARKROOM_DB_NAME) gets its own test
database and its own Redis key prefixes for cache, broker and results, so parallel runs never
consume each other's tasks or locks.
"""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import CACHES, CELERY_BROKER_TRANSPORT_OPTIONS, DATABASE_NAME, MIDDLEWARE, env

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
TEST_NAMESPACE = f"{DATABASE_NAME}-{_WORKER}"

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# pytest-django's test processes use locmem whatever this says; the bench's worker subprocesses
# (announcement_bench) set EMAIL_BACKEND to reach their local SMTP server.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
CACHES["default"]["LOCATION"] = env("TEST_CACHE_URL", default="redis://127.0.0.1:6379/11")
CACHES["default"]["KEY_PREFIX"] = f"test-{TEST_NAMESPACE}"
CELERY_BROKER_URL = env("TEST_CELERY_BROKER_URL", default="redis://127.0.0.1:6379/12")
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": f"test-{TEST_NAMESPACE}-"}
CELERY_RESULT_BACKEND = env("TEST_CELERY_RESULT_URL", default="redis://127.0.0.1:6379/13")
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": f"test-{TEST_NAMESPACE}-"}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# `flush` runs as the owner: the runtime role may not TRUNCATE. (Between transactional tests
# tests/conftest.py empties the database with DELETE as the superuser instead; see there.)
DATABASE_FLUSH_ALIAS = "owner"
LOG_LEVEL = "WARNING"
# Static files are not served in tests.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]
METRICS_BEARER_TOKEN = ""  # a developer's .env may set one; tests that need it set it
# Drop-in tests read faces from image metadata (apps/dropin/faces/fake.py); the local dlib
# backend has its own tests (tests/dropin/test_face_backends.py).
# Kill switches: every read goes to the database (a test engages and checks at once).
KILL_SWITCH_CACHE_SECONDS = 0.0
DROPIN_FACE_BACKEND = env("DARKROOM_DROPIN_FACE_BACKEND", default="fake")
# The webhook tests (fuzzing among them) send thousands of refused deliveries from one address;
# the refusal budget has its own tests, which set a small one.
WEBHOOK_REFUSAL_RATE = "1000000/min"
# Likewise the attendee pages, which the notification and drop-in tests visit from one address.
ATTENDEE_PAGE_RATE = "1000000/min"
