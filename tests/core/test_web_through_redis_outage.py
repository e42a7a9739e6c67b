"""The web tier through a Redis outage: every page, API operation, webhook and operator endpoint
a shopper, attendee, studio, integrator, provider or operator uses is served from PostgreSQL.

Redis is the cache (rate limits, the API-key cache, de-duplication marks, metrics counters), the
Celery broker and the lock service; PostgreSQL decides. A web request needs none of it: what
Redis adds is skipped (logged, counted), and a page never waits on Redis more than once per
REDIS_SKIP_SECONDS in a process.

Two outages, as the shared Redis server must stay up for everyone else:
* refused: the cache and the broker point at a port nothing listens on (127.0.0.1:1);
* silent: they point at a socket that accepts connections and never answers (a Redis behind a
  firewall dropping packets), where each call costs redis-py's socket timeout (0.5 s here, 5 s
  by default). A failed call leaves its connection for a new one, so the connections the socket
  accepted are the calls the web made.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.commerce.order_links import order_link
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.services import dropin_job_process
from apps.notifications.selectors import attendee_token
from apps.ops.metrics import PROCESS_REGISTRY
from apps.payments.models import WebhookEvent
from apps.payments.providers.registry import get_provider
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_paid
from tests.dropin.helpers import photo_of
from tests.factories.catalog import image_bytes
from tests.factories.commerce import Shop, make_shop
from tests.fixtures import TenantBundle
from tests.ledger.conftest import make_account
from tests.notifications.helpers import event_with_attendees
from tests.payments.signing_helpers import (
    PAYPAL_CERT_URL,
    paypal_capture_completed,
    paypal_cert_pem,
    paypal_headers,
    paypal_key,
    stripe_headers,
    stripe_session_completed,
)
from tests.web.shop.conftest import make_ready
from tests.web.studio.conftest import form_nonce_on, new_member, signed_in

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])

TIMEOUT = 0.5  # the outage's socket timeouts (redis-py's default is 5 s)
# A page may wait on Redis once (the call that finds it gone), never twice.
PAGE_BOUND = 1.9 * TIMEOUT + 1.5


@dataclass
class Outage:
    """Where the web's Redis goes at `start()`. `calls()` counts the calls a silent Redis received."""

    kind: str
    settings: Any
    monkeypatch: pytest.MonkeyPatch
    server: socket.socket | None = None
    accepted: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        """From now on the cache (limiter, key cache, marks, metrics) and the broker are unreachable."""
        if self.kind == "silent":
            self.server = socket.create_server(("127.0.0.1", 0), backlog=128)
            self.server.setblocking(False)
            address = f"127.0.0.1:{self.server.getsockname()[1]}"
        else:
            address = "127.0.0.1:1"
        default = self.settings.CACHES["default"]
        options = {**default.get("OPTIONS", {}), "SOCKET_CONNECT_TIMEOUT": TIMEOUT, "SOCKET_TIMEOUT": TIMEOUT}
        self.settings.CACHES = {"default": {**default, "LOCATION": f"redis://{address}/0", "OPTIONS": options}}
        # Another database on that server, as in production: the broker is another Redis location.
        self.monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://{address}/2")

    def calls(self) -> int:
        if self.server is not None:
            while True:
                try:
                    connection, _ = self.server.accept()
                except OSError:  # BlockingIOError: none waiting
                    break
                self.accepted.append(connection)
        return len(self.accepted)

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        if self.server is not None:
            self.server.close()


@pytest.fixture(params=["refused", "silent"])
def outage(request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    """Redis refusing connections, or accepting them and never answering, once `start()`ed."""
    settings.RATE_LIMIT_ENABLED = True  # as in production: every page asks its limiter
    found = Outage(kind=request.param, settings=settings, monkeypatch=monkeypatch)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(autouse=True)
def _key_cache_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no API-key cache failure remembered by this process (tests/conftest.py
    forgets the other Redis failures)."""
    monkeypatch.setattr(tenancy_selectors, "_cache_failed_at", None)


@dataclass
class Walk:
    """Pages asked during an outage, with their status, time and Redis calls. A page answers
    below 500, or 503 if it is in `unavailable` (it cannot work without Redis), within `bound`
    seconds, asking a silent Redis at most `redis_calls` times (the calls that find it gone: one
    per Redis it uses), and no more once they did."""

    outage: Outage
    unavailable: set[str] = field(default_factory=set)
    bound: float = PAGE_BOUND
    redis_calls: int = 1
    seen: list[tuple[str, int, float, int]] = field(default_factory=list)

    def __call__(self, label: str, response_of: Any) -> Any:
        calls, started = self.outage.calls(), time.monotonic()
        response = response_of()
        elapsed, made = time.monotonic() - started, self.outage.calls() - calls
        self.seen.append((label, response.status_code, elapsed, made))
        status = response.status_code
        assert status < 500 or (label in self.unavailable and status == 503), (
            f"{label}: {status} {response.content[:400]!r}"
        )
        assert elapsed < self.bound, f"{label} took {elapsed:.2f} s with Redis {self.outage.kind}"
        assert made <= self.redis_calls, f"{label} made {made} Redis calls with Redis {self.outage.kind}"
        return response

    def check_calls(self) -> None:
        """In all, the calls that found Redis gone and no more, for a silent Redis."""
        total = sum(made for *_, made in self.seen)
        assert total <= self.redis_calls, f"{total} Redis calls: {[(x[0], x[3]) for x in self.seen if x[3]]}"


def nonce_of(page: Any) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', page.content.decode())
    assert found, "no form nonce on the page"
    return found.group(1)


# --- shoppers ------------------------------------------------------------------------------


def test_a_shopper_browses_buys_and_finds_their_orders(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: a shop (a download, a print, the bulk product), and Redis unreachable
    shop = make_shop(org=tenant_a.org)
    make_ready(shop.photo)
    slug, event = tenant_a.org.slug, shop.event.slug
    outage.start()
    walk, browser = Walk(outage), Client()
    # when: a shopper opens the gallery and a photo, fills the cart and checks out with the sandbox
    walk("studio home", lambda: browser.get(f"/s/{slug}/"))
    walk("gallery", lambda: browser.get(f"/s/{slug}/{event}/"))
    photo_page = f"/s/{slug}/{event}/photos/{shop.photo.pk}/"
    walk("photo", lambda: browser.get(photo_page))
    added = walk("add to cart", lambda: browser.post(photo_page, {"product": shop.download.pk, "quantity": 1}))
    assert added.status_code == 303
    cart = walk("cart", lambda: browser.get(f"/s/{slug}/cart/"))
    digest = re.search(r'name="cart" value="([^"]+)"', cart.content.decode())
    assert digest
    form = {"nonce": nonce_of(cart), "cart": digest.group(1), "email": "ann@example.test", "provider": "sandbox"}
    placed = walk("checkout", lambda: browser.post(f"/s/{slug}/cart/checkout", form))
    # then: the checkout is placed, its page and status answer
    assert placed.status_code == 303, placed.content.decode()[:400]
    checkout_page = placed["Location"]
    assert walk("checkout page", lambda: browser.get(checkout_page)).status_code == 200
    assert walk("checkout status", lambda: browser.get(f"{checkout_page}status")).status_code == 200
    # and: the order's link opens it in another browser
    checkout_id = checkout_page.rstrip("/").rsplit("/", 1)[1]
    link = order_link(studio_slug=slug, tenant_id=tenant_a.org.pk, checkout_id=checkout_id)
    opened = walk("order link", lambda: Client().get("/s/" + link.split("/s/", 1)[1]))
    assert opened.status_code == 303
    # and: "find my orders" takes the request (its e-mail goes through the outbox)
    lookup = walk("find my orders", lambda: browser.get(f"/s/{slug}/orders/"))
    asked = walk(
        "find my orders sent",
        lambda: browser.post(f"/s/{slug}/orders/", {"nonce": nonce_of(lookup), "email": "ann@example.test"}),
    )
    assert asked.status_code == 303 and asked["Location"].endswith("/orders/sent")
    assert walk("orders sent", lambda: browser.get(asked["Location"])).status_code == 200
    walk.check_calls()


def test_a_shopper_finds_themself_by_selfie(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: a photo of Ann, indexed by drop-in (with Redis up), then Redis unreachable
    event = make_shop(org=tenant_a.org).event
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"
    make_ready(photo)
    outage.start()
    walk, browser, path = Walk(outage), Client(), f"/s/{tenant_a.org.slug}/{event.slug}/find-me"
    # when: Ann opens "find me" and sends her selfie
    walk("find me", lambda: browser.get(path))
    image = SimpleUploadedFile("me.png", fake_face_image(["ann"]), "image/png")
    found = walk("find me search", lambda: browser.post(path, {"image": image}))
    # then: her photo
    assert found.status_code == 200 and f"/photos/{photo.pk}/" in found.content.decode()
    walk.check_calls()


def test_the_sandbox_pay_page_says_it_cannot_work_without_redis(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: a sandbox checkout with its payment session (the sandbox keeps sessions in Redis), then
    # Redis unreachable
    shop = make_shop(org=tenant_a.org)
    created = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk}))
    assert created.status_code == 201, created.content
    drain_outbox()
    pay_page = f"/sandbox/pay/{created.json()['id']}"
    outage.start()
    walk, browser = Walk(outage, unavailable={"pay page", "pay", "status page"}), Client(HTTP_ACCEPT="text/html")
    # when: the shopper opens the sandbox's pay page, presses Pay, opens its status page
    pages = [
        walk("pay page", lambda: browser.get(pay_page)),
        walk("pay", lambda: browser.post(pay_page, {"action": "pay"})),
        walk("status page", lambda: browser.get(f"/sandbox/checkouts/{created.json()['id']}")),
    ]
    # then: each is a 503 page saying why, and when to try again; nothing was paid
    for page in pages:
        assert page.status_code == 503 and int(page["Retry-After"]) > 0
        assert "keeps its payment sessions in Redis" in page.content.decode()
    assert Client().get(pay_page, HTTP_ACCEPT="application/json")["Content-Type"] == "application/problem+json"
    with system_context("test: webhooks"):
        assert not WebhookEvent.objects.exists()
    walk.check_calls()


# --- attendees -----------------------------------------------------------------------------


def test_an_attendee_reads_unsubscribes_and_opens_drop_in(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: an attendee's signed link
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)
    outage.start()
    walk, browser = Walk(outage), Client()
    # when / then: each attendee page answers
    assert walk("inbox", lambda: browser.get(f"/attendee/{token}/")).status_code == 200
    walk("mark read", lambda: browser.post(f"/attendee/{token}/read"))
    assert walk("unsubscribe page", lambda: browser.get(f"/attendee/{token}/unsubscribe")).status_code == 200
    walk("unsubscribe", lambda: browser.post(f"/attendee/{token}/unsubscribe"))
    assert walk("drop-in page", lambda: browser.get(f"/attendee/{token}/drop-in")).status_code == 200
    walk("new link", lambda: browser.post(f"/attendee/{token}/new-link"))
    walk.check_calls()


# --- studios -------------------------------------------------------------------------------


def test_a_studio_signs_in_uploads_and_manages_its_studio(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: a photographer and the owner with a password, an event, and Redis unreachable
    owner = tenant_a.owner
    owner.set_password("pw-owner")
    owner.save(update_fields=["password"])
    shop = make_shop(org=tenant_a.org)
    outage.start()
    walk, browser = Walk(outage), Client()
    # when: the owner signs in (the sign-in limits count, then forget, the attempt)
    assert walk("sign-in page", lambda: browser.get("/studio/login/")).status_code == 200
    signed = walk(
        "sign in", lambda: browser.post("/studio/login/", {"username": owner.username, "password": "pw-owner"})
    )
    assert signed.status_code == 302, signed.content.decode()[:400]
    # then: the dashboard's pages answer
    for label, path in [
        ("overview", "/studio/"),
        ("events", "/studio/events/"),
        ("event", f"/studio/events/{shop.event.pk}/"),
        ("members", "/studio/members/"),
        ("api keys", "/studio/api-keys/"),
        ("sales", "/studio/sales/"),
        ("wallet", "/studio/wallet/"),
        ("announcements", "/studio/announcements/"),
    ]:
        assert walk(label, lambda path=path: browser.get(path)).status_code == 200, label
    # and: someone who forgot a password asks for a reset link
    forgot = Client()
    reset_page = walk("password reset page", lambda: forgot.get("/studio/password-reset/"))
    assert reset_page.status_code == 200
    asked = walk("password reset", lambda: forgot.post("/studio/password-reset/", {"email": owner.email}))
    assert asked.status_code == 302
    # and: a photographer uploads a photo
    photographer = signed_in(new_member(tenant_a.org, "photographer"))
    action = f"/studio/events/{shop.event.pk}/photos"
    nonce = form_nonce_on(photographer.get(f"/studio/events/{shop.event.pk}/"), action)
    image = SimpleUploadedFile("a.jpg", image_bytes(640, 480), content_type="image/jpeg")
    uploaded = walk("upload", lambda: photographer.post(action, {"nonce": nonce, "images": [image]}))
    assert uploaded.status_code == 303
    # and: the owner revokes the studio's API key (its cache mark waits for Redis)
    [revoke] = re.findall(r'href="(/studio/api-keys/\d+/revoke)"', browser.get("/studio/api-keys/").content.decode())
    confirm = walk("revoke key page", lambda: browser.get(revoke))
    revoked = walk("revoke key", lambda: browser.post(revoke, {"nonce": form_nonce_on(confirm, revoke)}))
    assert revoked.status_code in (302, 303)
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 401
    walk.check_calls()


# --- integrators, providers, operators -----------------------------------------------------


def test_the_api_and_a_signed_webhook_are_served(tenant_a: TenantBundle, outage: Outage) -> None:
    # given: a checkout whose sandbox payment session exists, paid at the sandbox (with Redis up,
    # where the sandbox keeps its sessions), then Redis unreachable
    shop: Shop = make_shop(org=tenant_a.org)
    paid = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk}))
    assert paid.status_code == 201, paid.content
    drain_outbox()
    paid_event = sandbox_paid(str(paid.json()["id"]))
    account = make_account(tenant_a.org)
    outage.start()
    client, walk = tenant_a.client(), Walk(outage)
    # when: an integrator works through the API
    events = walk("events", lambda: client.get("/api/v1/events"))
    assert events.status_code == 200
    assert walk("products", lambda: client.get(f"/api/v1/events/{shop.event.pk}/products")).status_code == 200
    prices = walk(
        "prices",
        lambda: client.post(
            f"/api/v1/events/{shop.event.pk}/prices",
            {"currency": "EUR", "prices": [{"kind": "download", "size": "", "amount_minor": 1000}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_key(),
        ),
    )
    assert prices.status_code in (200, 201), prices.content
    created = walk("checkout create", lambda: post_checkout(client, checkout_body(shop, {"product": shop.bulk.pk})))
    assert created.status_code == 201, created.content
    got = walk("checkout get", lambda: client.get(f"/api/v1/checkouts/{created.json()['id']}"))
    assert got.status_code == 200
    debit = walk(
        "ledger debit",
        lambda: client.post(
            "/api/v1/ledger/debits",
            {"account_id": account.pk, "amount_minor": 250, "currency": "EUR"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=new_key(),
        ),
    )
    assert debit.status_code == 201, debit.content
    # and: the sandbox delivers its signed payment event
    started = time.monotonic()
    assert deliver([paid_event]) == [200]
    assert time.monotonic() - started < PAGE_BOUND
    # and: Stripe delivers a signed event
    body = stripe_session_completed(checkout_id=str(created.json()["id"]), amount_minor=4900)
    signature = stripe_headers(body)["Stripe-Signature"]
    stripe = walk(
        "stripe webhook",
        lambda: Client().post(
            "/webhooks/stripe", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        ),
    )
    assert stripe.status_code == 200, stripe.content
    # then: the webhooks are recorded, to be applied by a worker once the broker is back
    with system_context("test: webhooks"):
        assert WebhookEvent.objects.filter(provider="sandbox").count() == 1
        assert WebhookEvent.objects.filter(provider="stripe").count() == 1
    walk.check_calls()


def test_paypal_deliveries_are_verified_with_a_certificate_fetched_once(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: Redis unreachable, and PayPal's certificate (cached nowhere yet) behind a fetcher that
    # counts what would go over the network
    key, fetched = paypal_key(), []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return paypal_cert_pem(key)

    provider = get_provider("paypal")
    monkeypatch.setattr(provider, "_fetch_cert", fetch)
    monkeypatch.setattr(provider, "_local_certs", {}, raising=False)
    outage.start()
    walk = Walk(outage)
    # when: PayPal delivers two signed events
    for number in range(2):
        body = paypal_capture_completed(checkout_id=str(uuid.uuid4()))
        meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in paypal_headers(body, key).items()}
        meta.pop("HTTP_CONTENT_TYPE")
        delivered = walk(
            f"paypal webhook {number}",
            lambda: Client().post("/webhooks/paypal", body, content_type="application/json", **meta),
        )
        assert delivered.status_code == 200, delivered.content
    # then: both are recorded, verified with one fetch (the process keeps the certificate while the
    # cache is away), and a silent Redis was asked once
    assert fetched == [PAYPAL_CERT_URL]
    with system_context("test: webhooks"):
        assert WebhookEvent.objects.filter(provider="paypal").count() == 2
    walk.check_calls()


def test_the_process_is_alive(outage: Outage) -> None:
    outage.start()
    assert Walk(outage)("healthz", lambda: Client().get("/healthz")).status_code == 200


def test_the_process_is_ready_with_redis_degraded(outage: Outage) -> None:
    # given: Redis unreachable
    outage.start()
    walk = Walk(outage)
    # when: a load balancer asks, twice
    first = walk("readyz", lambda: Client().get("/readyz"))
    again = walk("readyz again", lambda: Client().get("/readyz"))
    # then: ready (this process serves without Redis), Redis named as degraded
    for ready in (first, again):
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and ready.json()["degraded"] == ["redis"]
        assert ready.json()["checks"]["redis"]["ok"] is False and "failing" not in ready.json()
    walk.check_calls()


def test_metrics_render_and_say_redis_is_down(outage: Outage) -> None:
    # given: Redis unreachable, the cache's and the broker's
    outage.start()
    # a scrape may ask each of them once (a PING within 1 s, the queue depths within 2 s), within
    # Prometheus's scrape_timeout (10 s, config/prometheus/prometheus.yml)
    walk = Walk(outage, bound=10, redis_calls=2)
    # when: Prometheus scrapes, twice
    for label in ("metrics", "metrics again"):
        scraped = walk(label, lambda: Client().get("/metrics"))
        # then: the figures PostgreSQL holds, and Redis reported down
        assert scraped.status_code == 200
        assert re.search(r"^darkroom_redis_up 0\.0$", scraped.content.decode(), re.M)
        assert re.search(r"^darkroom_outbox_backlog ", scraped.content.decode(), re.M)
    walk.check_calls()


def test_a_redis_failure_is_logged_and_counted_once_per_skip_window(
    tenant_a: TenantBundle, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    # given: an attendee's link (its pages ask their limiter), and Redis unreachable
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    inbox = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)}/"

    def counted(name: str) -> float:
        return PROCESS_REGISTRY.get_sample_value(name, {"component": "ratelimit"}) or 0.0

    failed, skipped = counted("darkroom_redis_failures_total"), counted("darkroom_redis_skipped_total")
    outage.start()
    # when: the attendee opens the inbox three times
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert Client().get(inbox).status_code == 200
    # then: the first request found Redis gone (one warning, one failure counted) and the others
    # did not ask it (two skipped)
    assert counted("darkroom_redis_failures_total") == failed + 1
    assert counted("darkroom_redis_skipped_total") == skipped + 2
    [warning] = [r for r in caplog.records if r.name == "darkroom.ratelimit"]
    assert warning.levelname == "WARNING" and warning.getMessage() == "rate limiter unavailable; request let through"
