"""Local development: debug on, console email."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# Serve static files straight from the apps under gunicorn during development.
WHITENOISE_USE_FINDERS = True
