"""Webhook refusals are budgeted per provider and client address, and a delivery that verifies
is never refused by that budget: a forger sharing the provider's address (everyone behind our
reverse proxy, when TRUSTED_PROXIES is empty) cannot stop payments being confirmed. Only
verification that would fetch PayPal's certificate waits for the budget, before the fetch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.payments.models import WebhookEvent
from apps.payments.providers.paypal import CertificateFetchError
from apps.payments.providers.registry import get_provider
from tests.commerce.helpers import system_count
from tests.fixtures import forget_rate_limit_windows
from tests.payments import signing_helpers as sign
from tests.payments.test_webhook_endpoint import sandbox_body

pytestmark = pytest.mark.django_db(transaction=True)
PROXY = "10.0.0.2"  # a load balancer in front of gunicorn


@pytest.fixture(autouse=True)
def _fresh_budget(settings: Any) -> Iterator[None]:
    settings.RATE_LIMIT_ENABLED = True
    settings.WEBHOOK_REFUSAL_RATE = "3/min"
    forget_rate_limit_windows("webhook-refusals:")
    yield
    forget_rate_limit_windows("webhook-refusals:")


def deliver(provider: str, body: bytes, headers: dict[str, str], *, address: str = "198.51.100.7") -> Any:
    return Client(REMOTE_ADDR=address).post(
        f"/webhooks/{provider}", data=body, content_type="application/json", headers=headers
    )


class CountingFetcher:
    """Stands in for the HTTPS fetch of a PayPal certificate: counts the URLs asked for and
    answers like a certificate URL that does not exist."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        raise CertificateFetchError(f"GET {url} answered 404")


def forged_cert_url() -> str:
    return f"https://api.sandbox.paypal.com/v1/notifications/certs/CERT-forged-{uuid.uuid4().hex}"


def test_a_forger_behind_the_shared_proxy_cannot_lock_the_provider_out(settings: Any) -> None:
    # given: production's defaults: 60 refusals a minute, no trusted proxies, so every sender
    # has the proxy's address
    settings.WEBHOOK_REFUSAL_RATE = "60/min"
    settings.TRUSTED_PROXIES = []

    def through_proxy(body: bytes, headers: dict[str, str], forwarded_for: str) -> Any:
        headers = {**headers, "X-Forwarded-For": forwarded_for}
        return deliver("sandbox", body, headers, address=PROXY)

    # when: a forger spends the budget, and the provider then delivers a correctly signed event
    forged = [through_proxy(sandbox_body(), {"Sandbox-Signature": "t=1,v1=00"}, "203.0.113.66") for _ in range(60)]
    body = sandbox_body()
    genuine = through_proxy(body, sign.sandbox_headers(body), "54.187.174.169")
    # then: the forgeries are refused, the genuine delivery is recorded
    assert {r.status_code for r in forged} == {400}
    assert genuine.status_code == 200, genuine.content
    assert system_count(lambda: WebhookEvent.objects.all()) == 1


def test_over_the_budget_forgeries_get_429_and_signed_deliveries_from_the_address_still_200() -> None:
    # given: an address whose sandbox deliveries failed verification three times (the budget)
    forged = {"Sandbox-Signature": "t=1,v1=deadbeef"}
    refused = [deliver("sandbox", sandbox_body(), dict(forged)).status_code for _ in range(3)]
    # when: it sends another forgery, then a correctly signed delivery
    limited = deliver("sandbox", sandbox_body(), dict(forged))
    body = sandbox_body()
    genuine = deliver("sandbox", body, sign.sandbox_headers(body))
    # then: three 400s, a 429 problem with Retry-After for the forgery, and the signed one recorded
    assert refused == [400, 400, 400]
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert limited["Content-Type"] == "application/problem+json"
    assert genuine.status_code == 200, genuine.content
    assert system_count(lambda: WebhookEvent.objects.all()) == 1


def test_genuine_deliveries_never_use_the_budget_and_other_addresses_keep_theirs() -> None:
    # given: a provider delivering many valid events from one address
    valid = [deliver("sandbox", body, sign.sandbox_headers(body)) for body in (sandbox_body() for _ in range(6))]
    # then: all recorded, none limited
    assert [r.status_code for r in valid] == [200] * 6
    # when: another address spends its budget on bad signatures
    for _ in range(3):
        deliver("sandbox", sandbox_body(), {"Sandbox-Signature": "t=1,v1=00"}, address="203.0.113.9")
    # then: that address is limited, the provider's is not, and another provider's budget is apart
    assert deliver("sandbox", sandbox_body(), {}, address="203.0.113.9").status_code == 429
    body = sandbox_body()
    assert deliver("sandbox", body, sign.sandbox_headers(body)).status_code == 200
    assert deliver("stripe", b"{}", {}, address="203.0.113.9").status_code == 400


def test_over_the_budget_paypal_fetches_no_certificate_but_accepts_one_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: PayPal's certificate cached, and a fetcher that counts what would go over the network
    key = sign.paypal_key()
    sign.paypal_trust(key)
    fetcher = CountingFetcher()
    monkeypatch.setattr(get_provider("paypal"), "_fetch_cert", fetcher)
    # when: a forger sends signed-looking deliveries naming allow-listed certificates we lack
    # until its budget is spent, then one more
    spent = []
    for _ in range(3):
        body = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
        spent.append(deliver("paypal", body, sign.paypal_headers(body, key, cert_url=forged_cert_url())))
    body = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
    limited = deliver("paypal", body, sign.paypal_headers(body, key, cert_url=forged_cert_url()))
    # then: three fetches and 400s, and the fourth is 429 without a fetch
    assert [r.status_code for r in spent] == [400, 400, 400]
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert len(fetcher.urls) == 3
    # when: from the same address, a delivery with a bad signature and then a genuine one, both
    # naming the cached certificate
    forged = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
    refused = deliver("paypal", forged, sign.paypal_headers(forged, sign.paypal_key()))
    genuine_body = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
    genuine = deliver("paypal", genuine_body, sign.paypal_headers(genuine_body, key))
    # then: both are verified without a fetch: the forgery is refused, the genuine one recorded
    assert refused.status_code == 429
    assert genuine.status_code == 200, genuine.content
    assert len(fetcher.urls) == 3
    assert system_count(lambda: WebhookEvent.objects.all()) == 1
