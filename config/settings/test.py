"""Tests: real Postgres and Redis, fast hashing, in-memory email, separate Redis databases."""

from config.settings.base import *  # noqa: F403
from config.settings.base import CACHES, env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES["default"]["LOCATION"] = env("TEST_CACHE_URL", default="redis://127.0.0.1:6379/11")
CELERY_BROKER_URL = env("TEST_CELERY_BROKER_URL", default="redis://127.0.0.1:6379/12")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# `flush` between transactional tests runs as the owner: the runtime role may not TRUNCATE.
DATABASE_FLUSH_ALIAS = "owner"
LOG_LEVEL = "WARNING"
# Static files are not served in tests.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]
