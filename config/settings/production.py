"""Production: only hardening. Required secrets have no default."""

import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import ANNOUNCEMENT_MAILER, POSTMARK_SERVER_TOKEN, TRUSTED_PROXIES, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
FLOWER_BASIC_AUTH = env("FLOWER_BASIC_AUTH")
METRICS_BEARER_TOKEN = env("DARKROOM_METRICS_TOKEN")  # Prometheus: `authorization: {credentials: ...}`
# Set but empty (as `.env.example` ships them) would leave Flower or /metrics open: refuse to start.
for _name, _value in (("FLOWER_BASIC_AUTH", FLOWER_BASIC_AUTH), ("DARKROOM_METRICS_TOKEN", METRICS_BEARER_TOKEN)):
    if len(_value) < 16:
        raise ImproperlyConfigured(f"{_name} must be set to a secret of at least 16 characters in production")
# Production runs behind a reverse proxy that terminates TLS, unless DARKROOM_NO_PROXY=true says
# gunicorn faces clients itself (then X-Forwarded-Proto, which anyone can send, is not believed).
NO_PROXY = env.bool("DARKROOM_NO_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = None if NO_PROXY else ("HTTP_X_FORWARDED_PROTO", "https")
# Behind the proxy every socket peer is the proxy: unless its addresses are listed, every
# per-address limit (sign-in, access codes, webhook refusals) is one budget all clients share.
if SECURE_PROXY_SSL_HEADER and not TRUSTED_PROXIES:
    raise ImproperlyConfigured(
        "DARKROOM_TRUSTED_PROXIES must list the reverse proxies' addresses or CIDR networks (e.g."
        " 10.0.0.0/8): behind a proxy every client otherwise has the proxy's address and shares its"
        " rate limits. Set DARKROOM_NO_PROXY=true if clients reach gunicorn directly."
    )
if NO_PROXY and TRUSTED_PROXIES:
    raise ImproperlyConfigured("DARKROOM_NO_PROXY=true says there is no proxy, but DARKROOM_TRUSTED_PROXIES lists some")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_CONTENT_TYPE_NOSNIFF = True
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")

# Payment providers: the local defaults in base.py are public, so production requires them.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRETS")
FLUTTERWAVE_SECRET_KEY = env("FLUTTERWAVE_SECRET_KEY")
FLUTTERWAVE_SECRET_HASH = env("FLUTTERWAVE_SECRET_HASH")
PAYPAL_CLIENT_ID = env("PAYPAL_CLIENT_ID")
PAYPAL_CLIENT_SECRET = env("PAYPAL_CLIENT_SECRET")
PAYPAL_WEBHOOK_ID = env("PAYPAL_WEBHOOK_ID")
PAYPAL_API_BASE = env("PAYPAL_API_BASE", default="https://api-m.paypal.com")
# The sandbox provider (local pay page, public webhook secret) is off unless asked for.
SANDBOX_ENABLED = env.bool("DARKROOM_SANDBOX_ENABLED", default=False)
SANDBOX_WEBHOOK_SECRET = env("SANDBOX_WEBHOOK_SECRET", default="") if SANDBOX_ENABLED else ""

# The address shoppers and attendees reach us at: payment return links, unsubscribe links and
# List-Unsubscribe headers are built from it, so a loopback or plain-http default would send
# them nowhere. Required, https, a real host.
DARKROOM_PUBLIC_BASE_URL = env("DARKROOM_PUBLIC_BASE_URL").rstrip("/")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


_public = urlsplit(DARKROOM_PUBLIC_BASE_URL)
if _public.scheme != "https" or not _public.hostname or _loopback(_public.hostname):
    raise ImproperlyConfigured(
        f"DARKROOM_PUBLIC_BASE_URL must be the https address shoppers reach (got {DARKROOM_PUBLIC_BASE_URL!r})"
    )
# Where a provider sends the shopper of an API checkout that gave no `return_url`; the local
# default is the sandbox's page, which production does not serve unless the sandbox is on.
CHECKOUT_RETURN_URL = env(
    "DARKROOM_CHECKOUT_RETURN_URL",
    default=f"{DARKROOM_PUBLIC_BASE_URL}/sandbox/checkouts/{{checkout_id}}" if SANDBOX_ENABLED else "",
)
if "{checkout_id}" not in CHECKOUT_RETURN_URL or not CHECKOUT_RETURN_URL.startswith("https://"):
    raise ImproperlyConfigured(
        "DARKROOM_CHECKOUT_RETURN_URL must be an https URL containing {checkout_id}: where payment"
        " providers send shoppers of API checkouts that give no return_url"
    )
# Announcements through Postmark's batch API need its server token: without one every batch is
# refused (401) and announcements wait forever.
if ANNOUNCEMENT_MAILER not in ("django", "postmark"):
    raise ImproperlyConfigured(
        f"DARKROOM_ANNOUNCEMENT_MAILER must be 'django' or 'postmark' (got {ANNOUNCEMENT_MAILER!r})"
    )
if ANNOUNCEMENT_MAILER == "postmark" and not POSTMARK_SERVER_TOKEN:
    raise ImproperlyConfigured("POSTMARK_SERVER_TOKEN must be set when DARKROOM_ANNOUNCEMENT_MAILER=postmark")
