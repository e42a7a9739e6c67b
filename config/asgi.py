"""ASGI entry point. The app gets request bodies only within the body-size limits
(`apps.core.asgi_body_limit`): Django's ASGI handler would otherwise read any body whole before
its middleware could refuse it."""

import os

from django.core.asgi import get_asgi_application

from apps.core.asgi_body_limit import BodyLimitASGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = BodyLimitASGI(get_asgi_application())
