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
}


def _load_production(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **SECRETS, **overrides}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings.production as p; print(bool(p.METRICS_BEARER_TOKEN))"],
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
