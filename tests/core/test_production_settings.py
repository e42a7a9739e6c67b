"""`config.settings.production` starts only with its secrets set, and not with empty ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings

SECRETS = {
    "DJANGO_SECRET_KEY": "x" * 50,
    "DJANGO_ALLOWED_HOSTS": "darkroom.example",
    "FLOWER_BASIC_AUTH": "ops:a-long-flower-password",
    "DARKROOM_METRICS_TOKEN": "a-long-metrics-bearer-token",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_WEBHOOK_SECRETS": "whsec_x",
    "FLUTTERWAVE_SECRET_KEY": "FLWSECK-x",
    "FLUTTERWAVE_SECRET_HASH": "hash",
    "PAYPAL_CLIENT_ID": "id",
    "PAYPAL_CLIENT_SECRET": "secret",
    "PAYPAL_WEBHOOK_ID": "WH-1",
    "DARKROOM_PUBLIC_BASE_URL": "https://photos.example.com",
    "DARKROOM_CHECKOUT_RETURN_URL": "https://studio.example.com/orders/{checkout_id}",
    "DARKROOM_TRUSTED_PROXIES": "10.0.0.0/8",
}


def _load_production(
    *, show: str = "bool(p.METRICS_BEARER_TOKEN)", **overrides: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **SECRETS, **overrides}
    return subprocess.run(
        [sys.executable, "-c", f"import config.settings.production as p; print({show})"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_settings_load_with_their_secrets() -> None:
    loaded = _load_production()
    assert (loaded.returncode, loaded.stdout.strip()) == (0, "True"), loaded.stderr[-2000:]


@pytest.mark.parametrize("name", ["DARKROOM_METRICS_TOKEN", "FLOWER_BASIC_AUTH"])
def test_an_empty_or_short_guard_secret_stops_production_from_starting(name: str) -> None:
    # given: the variable set, but empty (as .env.example ships it) or too short to be a secret
    for value in ("", "short"):
        # when: production settings load
        loaded = _load_production(**{name: value})
        # then: they refuse, naming the variable, rather than leave Flower or /metrics open
        assert loaded.returncode != 0
        assert f"{name} must be set to a secret" in loaded.stderr


@pytest.mark.parametrize(
    "base_url", ["", "http://photos.example.com", "https://127.0.0.1:8000", "https://localhost", "https://[::1]"]
)
def test_a_missing_or_unreachable_public_base_url_stops_production_from_starting(base_url: str) -> None:
    # when: production settings load with no public address, a plain-http one or a loopback one
    loaded = _load_production(DARKROOM_PUBLIC_BASE_URL=base_url)
    # then: they refuse rather than send shoppers' payment returns and unsubscribe links nowhere
    assert loaded.returncode != 0
    assert "DARKROOM_PUBLIC_BASE_URL" in loaded.stderr


@pytest.mark.parametrize("return_url", ["", "https://studio.example.com/orders", "http://x.example/{checkout_id}"])
def test_a_checkout_return_url_without_the_checkout_or_https_stops_production(return_url: str) -> None:
    loaded = _load_production(DARKROOM_CHECKOUT_RETURN_URL=return_url)
    assert loaded.returncode != 0
    assert "DARKROOM_CHECKOUT_RETURN_URL must be an https URL" in loaded.stderr


def test_with_the_sandbox_on_the_return_url_defaults_to_its_page() -> None:
    env = {k: v for k, v in SECRETS.items() if k != "DARKROOM_CHECKOUT_RETURN_URL"}
    loaded = subprocess.run(
        [sys.executable, "-c", "import config.settings.production as p; print(p.CHECKOUT_RETURN_URL)"],
        cwd=settings.BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env, "DARKROOM_SANDBOX_ENABLED": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.stdout.strip() == "https://photos.example.com/sandbox/checkouts/{checkout_id}", loaded.stderr[-2000:]


def test_behind_the_proxy_without_trusted_proxies_production_does_not_start() -> None:
    # given: production behind its reverse proxy (the default), with no proxy listed
    # when: production settings load
    loaded = _load_production(DARKROOM_TRUSTED_PROXIES="")
    # then: they refuse, telling the operator to list the proxies, rather than let every client
    # share the proxy's address and so one rate-limit budget (a forger could lock out webhooks)
    assert loaded.returncode != 0
    assert "DARKROOM_TRUSTED_PROXIES must list the reverse proxies" in loaded.stderr
    assert "DARKROOM_NO_PROXY=true" in loaded.stderr


def test_not_behind_a_proxy_production_starts_without_trusted_proxies_and_ignores_forwarded_proto() -> None:
    # when: the operator says clients reach gunicorn directly, and lists no proxy
    loaded = _load_production(
        show="p.SECURE_PROXY_SSL_HEADER, p.TRUSTED_PROXIES", DARKROOM_TRUSTED_PROXIES="", DARKROOM_NO_PROXY="true"
    )
    # then: they load, and X-Forwarded-Proto (which any client could send) is not believed
    assert (loaded.returncode, loaded.stdout.strip()) == (0, "None []"), loaded.stderr[-2000:]


def test_no_proxy_with_trusted_proxies_listed_stops_production() -> None:
    loaded = _load_production(DARKROOM_NO_PROXY="true")
    assert loaded.returncode != 0
    assert "DARKROOM_NO_PROXY=true says there is no proxy" in loaded.stderr


def test_behind_the_proxy_with_trusted_proxies_it_believes_forwarded_proto() -> None:
    loaded = _load_production(show="p.SECURE_PROXY_SSL_HEADER, p.TRUSTED_PROXIES")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https') ['10.0.0.0/8']"


def test_the_postmark_mailer_without_its_server_token_stops_production() -> None:
    # when: production settings load with announcements sent through Postmark but no token, or a mailer misspelt
    no_token = _load_production(DARKROOM_ANNOUNCEMENT_MAILER="postmark")
    misspelt = _load_production(DARKROOM_ANNOUNCEMENT_MAILER="postmak")
    with_token = _load_production(DARKROOM_ANNOUNCEMENT_MAILER="postmark", POSTMARK_SERVER_TOKEN="server-token")
    # then: they refuse, naming what is missing, rather than leave every announcement waiting
    assert no_token.returncode != 0 and "POSTMARK_SERVER_TOKEN must be set" in no_token.stderr
    assert misspelt.returncode != 0 and "DARKROOM_ANNOUNCEMENT_MAILER must be" in misspelt.stderr
    assert with_token.returncode == 0, with_token.stderr[-2000:]
