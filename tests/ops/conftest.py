"""Fixtures of the operations tests: a real scrape of /metrics, shared by the alert rules' test
and the README's (test_alert_rules.py, test_readme_matches_code.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context


@pytest.fixture
def exported(settings: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, set[str]]]:
    """Every sample name of a real scrape of /metrics, with each label's values.

    Made after rows whose labels appear only once such a row exists: a failed payment webhook
    event and a payout webhook that named no payout of ours; and after requests, since the HTTP
    series appear with their first answer: one to an API route and one answered 500 (the home
    page, its rendering made to fail)."""
    with system_context("test: a scrape of /metrics"):
        for status, outcome in ((WebhookEvent.Status.FAILED, ""), (WebhookEvent.Status.IGNORED, "unknown_payout")):
            WebhookEvent.objects.create(
                provider="stripe",
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type="transfer.reversed" if outcome else "checkout.session.completed",
                raw_body=b"{}",
                received_at=timezone.now(),
                status=status,
                payout_outcome=outcome,
            )

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a server error for the alert rules' scrape")

    monkeypatch.setattr("apps.ops.views.render", fail)
    client = Client(raise_request_exception=False)
    assert client.get("/api/v1/events").status_code == 401
    assert client.get("/").status_code == 500
    settings.METRICS_BEARER_TOKEN = "alert-rules-scrape-token"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer alert-rules-scrape-token")
    assert response.status_code == 200
    samples: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples
