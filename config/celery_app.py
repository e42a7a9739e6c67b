"""The Celery application.

Wiring for at-least-once work lives in settings (CELERY_*): JSON only, acks_late with
reject_on_worker_lost, prefetch 1, visibility timeout above every countdown, time limits,
one queue per domain, task modules listed explicitly in CELERY_IMPORTS.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("darkroom")
app.config_from_object("django.conf:settings", namespace="CELERY")
