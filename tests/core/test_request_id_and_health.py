"""X-Request-ID round trip and logs; /healthz and /readyz."""

import json
import logging
import re
import socket
import threading
import time
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from pythonjsonlogger.json import JsonFormatter

from apps.core.logging import ContextFilter
from apps.core.request_context import get_request_id
from apps.tenancy.services import organization_create
from tests.factories.tenancy import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_request_id_is_echoed_when_given(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"


def test_request_id_is_generated_when_missing_or_invalid(client):
    generated = client.get("/healthz")["X-Request-ID"]
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert len(generated) == 32 and len(replaced) == 32 and generated != replaced


def test_every_json_log_line_carries_the_request_id(client, caplog, settings):
    # given: the JSON formatter exactly as configured in LOGGING
    config = settings.LOGGING["formatters"]["json"]
    formatter = JsonFormatter(config["fmt"], rename_fields=config["rename_fields"])
    # when: a request with an id is served
    with caplog.at_level(logging.INFO, logger="darkroom.request"):
        client.get("/healthz", HTTP_X_REQUEST_ID="log-me-1")
    # then: its log records carry the id, and the rendered JSON line has it as a field
    records = [r for r in caplog.records if r.name == "darkroom.request"]
    assert records and all(r.request_id == "log-me-1" for r in records)
    line = json.loads(formatter.format(records[0]))
    assert line["request_id"] == "log-me-1" and line["level"] == "INFO"
    # and the line is the access log: what was asked, the answer, how long it took, from where
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"


def test_an_admin_request_is_logged_with_the_user_who_made_it(caplog):
    # given: a platform superuser signed in to the admin, which reads every studio's rows
    operator = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)
    # when: they open a list
    with caplog.at_level(logging.INFO, logger="darkroom.request"):
        client.get("/admin/tenancy/auditlog/")
        Client().get("/healthz")
    # then: the admin request's access line names them; other lines carry no user field
    admin_line, health_line = (r for r in caplog.records if r.name == "darkroom.request")
    assert admin_line.path == "/admin/tenancy/auditlog/" and admin_line.user_id == operator.pk
    assert not hasattr(health_line, "user_id")


@pytest.fixture
def photographer_client(make_tenant):
    """A Django test client signed in as a photographer of a studio (no money role)."""
    user = UserFactory()
    MembershipFactory(tenant=make_tenant().org, user=user, role="photographer")
    client = Client()
    client.force_login(user)
    return client


def _django_request_lines(caplog, settings) -> list[dict]:
    """The `django.request` records as the console handler writes them: through LOGGING's
    context filter and JSON formatter."""
    config = settings.LOGGING["formatters"]["json"]
    formatter = JsonFormatter(config["fmt"], rename_fields=config["rename_fields"])
    records = [r for r in caplog.records if r.name == "django.request"]
    context = ContextFilter()
    return [json.loads(formatter.format(r)) for r in records if context.filter(r)]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/no-such-endpoint", 404),  # an API path no view serves
        ("/no-such-page/", 404),  # a page path no view serves
        ("/api/v1/payouts", 403),  # DRF's refusal: a photographer may not see payouts
        ("/studio/members/", 403),  # a studio page the role may not open
    ],
)
def test_django_request_warnings_carry_the_request_id(photographer_client, caplog, settings, path, status):
    # given: a request that sends its id, to a path Django answers with a 4xx
    # when: it is served
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = photographer_client.get(path, HTTP_X_REQUEST_ID=f"rid-{status}-1")
    # then: Django's warning about it is one JSON line with that request id
    assert response.status_code == status
    lines = _django_request_lines(caplog, settings)
    assert len(lines) == 1, lines
    assert lines[0]["request_id"] == f"rid-{status}-1" and lines[0]["level"] == "WARNING"


def test_a_permission_denied_warning_carries_the_request_id(client, caplog, settings):
    # given: a platform superuser, and an admin page Django refuses with PermissionDenied (photos
    # are never added by hand)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    # when: they open it with a request id
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/admin/catalog/photo/add/", HTTP_X_REQUEST_ID="rid-admin-1")
    # then: one warning line, with the id
    assert response.status_code == 403
    lines = _django_request_lines(caplog, settings)
    assert [(line["request_id"], line["level"]) for line in lines] == [("rid-admin-1", "WARNING")]


def test_the_request_id_does_not_outlive_its_request(client, caplog):
    # given: a request with an id that Django logs a warning about, served on this thread
    with caplog.at_level(logging.INFO):
        client.get("/no-such-page/", HTTP_X_REQUEST_ID="rid-gone-1")
        # when: the thread logs again after the request (gunicorn's gthread workers reuse threads)
        logging.getLogger("darkroom.test").warning("after the request")
    # then: neither the context nor that line carries the finished request's id
    (after,) = [r for r in caplog.records if r.name == "darkroom.test"]
    assert get_request_id() is None
    assert ContextFilter().filter(after) and after.request_id is None


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": {"ok": True}, "redis": {"ok": True}, "migrations": {"ok": True}},
    }


def _redis_refusing(settings) -> None:
    """The cache points at a port where no Redis listens (Django resets cache handlers)."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 0.5},
        }
    }


def test_readyz_stays_ready_and_names_redis_degraded_when_it_is_down(client, settings):
    # given: Redis unreachable (the web serves without it: tests/core/test_web_through_redis_outage.py)
    _redis_refusing(settings)
    # when: a load balancer asks
    response = client.get("/readyz")
    # then: ready, so it keeps routing to this process, with Redis named as degraded
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["degraded"] == ["redis"] and "failing" not in body
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_readyz_answers_soon_when_redis_accepts_connections_but_never_replies(client, settings):
    # given: the cache points at a host that takes the connection and then says nothing (a Redis
    # behind a firewall dropping packets), where each Redis call waits redis-py's socket timeout (5 s)
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"}
    }
    answers: list[Any] = []

    def ask() -> None:
        try:
            started = time.monotonic()
            answers.append((Client().get("/readyz"), time.monotonic() - started))
        finally:
            connections.close_all()

    # when: readiness is asked (in a thread, so a hang fails the test instead of stalling the run)
    asking = threading.Thread(target=ask, daemon=True)
    try:
        asking.start()
        asking.join(timeout=30)
    finally:
        silent.close()
    # then: it answered within the probe's own timeout (1 s), not the socket timeout: a load
    # balancer's health check gives up after a few seconds; ready, Redis degraded
    assert answers, "/readyz hung on a silent Redis"
    response, took = answers[0]
    assert took < 3, f"/readyz took {took:.1f} s"
    assert response.status_code == 200 and response.json()["degraded"] == ["redis"]


def test_readyz_tells_why_only_to_the_metrics_token(client, settings):
    # given: a metrics token (production requires one), and Redis unreachable
    settings.METRICS_BEARER_TOKEN = "ops-secret-token"
    _redis_refusing(settings)
    # when: anyone asks, then the operator with the token
    public = client.get("/readyz")
    operator = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-secret-token")
    # then: both learn that Redis is degraded; only the operator sees why (the error names its address)
    assert public.status_code == operator.status_code == 200
    assert public.json()["degraded"] == operator.json()["degraded"] == ["redis"]
    assert "detail" not in public.json()["checks"]["redis"] and "127.0.0.1:1" not in public.content.decode()
    assert "127.0.0.1:1" in operator.json()["checks"]["redis"]["detail"]


def test_home_page_links_to_docs_admin_and_operator_pages_that_exist(client):
    # when
    response = client.get("/")
    # then: a page, and every link on it answers (the admin redirects to its login); its icon is
    # a static file, which the tests do not serve (tests/web/test_favicon.py finds it)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    links = set(re.findall(r'<a [^>]*href="([^"]+)"', response.content.decode()))
    assert {"/api/docs/", "/admin/", "/studio/", "/ops/inventory", "/healthz", "/readyz", "/metrics"} <= links
    for link in links:
        assert client.get(link).status_code in (200, 302), link


def test_home_page_links_to_the_demo_shop_once_the_demo_studio_exists(client):
    assert "/s/demo-studio/" not in client.get("/").content.decode()
    organization_create(slug="demo-studio", name="Demo Studio")
    body = client.get("/").content.decode()
    assert 'href="/s/demo-studio/"' in body
    assert client.get("/s/demo-studio/").status_code == 200


def test_metrics_are_open_without_a_configured_token(client, settings):
    settings.METRICS_BEARER_TOKEN = ""
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic c2NyYXBlOnMzY3JldA==", "s3cret-token"])
def test_metrics_refuse_a_scraper_without_the_token(client, settings, authorization):
    # given: a metrics token; when: a scraper sends none, another, or another scheme
    settings.METRICS_BEARER_TOKEN = "s3cret-token"
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    # then: a 401 problem that shows no figure
    assert (response.status_code, response["Content-Type"]) == (401, "application/problem+json")
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "darkroom_" not in response.content.decode()


def test_metrics_answer_the_scraper_with_the_token(client, settings):
    # given: a metrics token; when: the scraper sends it
    settings.METRICS_BEARER_TOKEN = "s3cret-token"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    # then: the figures
    assert response.status_code == 200
    assert "darkroom_outbox_backlog" in response.content.decode()
