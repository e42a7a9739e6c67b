"""An address whose webhook deliveries keep failing verification is answered 429 before any
verification work; deliveries that verify never count against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.payments.models import WebhookEvent
from tests.commerce.helpers import system_count
from tests.fixtures import forget_rate_limit_windows
from tests.payments import signing_helpers as sign
from tests.payments.test_webhook_endpoint import sandbox_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_budget(settings: Any) -> Iterator[None]:
    settings.WEBHOOK_REFUSAL_RATE = "3/min"
    forget_rate_limit_windows("webhook-refusals:")
    yield
    forget_rate_limit_windows("webhook-refusals:")


def deliver(provider: str, body: bytes, headers: dict[str, str], *, address: str = "198.51.100.7") -> Any:
    return Client(REMOTE_ADDR=address).post(
        f"/webhooks/{provider}", data=body, content_type="application/json", headers=headers
    )


def test_repeated_bad_signatures_are_refused_before_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a forger sending sandbox deliveries with a wrong signature
    forged = {"Sandbox-Signature": "t=1,v1=deadbeef"}
    refused = [deliver("sandbox", sandbox_body(), dict(forged)).status_code for _ in range(3)]
    # when: it keeps going; verification would now be reached only through the budget
    from apps.payments.providers.sandbox import SandboxProvider

    verified: list[int] = []
    real = SandboxProvider.authenticate

    def counting(self: Any, **kwargs: Any) -> Any:
        verified.append(1)
        return real(self, **kwargs)

    monkeypatch.setattr(SandboxProvider, "authenticate", counting)
    limited = deliver("sandbox", sandbox_body(), dict(forged))
    # then: three 400s, then a 429 with Retry-After that did no verification and recorded nothing
    assert refused == [400, 400, 400]
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert limited["Content-Type"] == "application/problem+json"
    assert verified == [] and system_count(lambda: WebhookEvent.objects.all()) == 0


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
