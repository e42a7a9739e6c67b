"""Partial refunds at the sandbox provider: several refunds of one payment, each with its own id
and its own `payment.refunded` event (the refund's id, the cumulative amount), never more than
the payment in total, also when refunds race (real Redis, real threads, an injected competitor).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from apps.payments.providers.base import PaymentStatus, ProviderError, RefundResult, WebhookEnvelope
from apps.payments.providers.registry import get_provider
from apps.payments.providers.sandbox import SandboxEvent, SandboxProvider, SandboxWebhookSender, build_event
from apps.payments.sandbox import sandbox_announce_refund
from tests.payments.provider_transport import ScriptedTransport

PAYMENT = 1500  # EUR minor units


@pytest.fixture
def secret() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def sandbox(secret: str) -> SandboxProvider:
    return SandboxProvider(webhook_secrets=[secret], public_base_url="http://127.0.0.1:8000/", cache=cache)


def paid_payment(sandbox: SandboxProvider, amount_minor: int = PAYMENT) -> str:
    """A sandbox session the shopper paid; returns its reference."""
    session = sandbox.create_session(
        checkout_id=str(uuid.uuid4()),
        amount_minor=amount_minor,
        currency="EUR",
        email="shopper@example.com",
        description="photos",
        success_url="http://127.0.0.1:8000/done",
        cancel_url="http://127.0.0.1:8000/cancel",
    )
    sandbox.settle(reference=session.reference, outcome=PaymentStatus.PAID)
    return session.reference


def delivered(sandbox: SandboxProvider, secret: str, event: SandboxEvent) -> WebhookEnvelope:
    """The envelope the sandbox adapter makes of a signed delivery of `event`."""
    headers = SandboxWebhookSender(secret=secret, url="http://x/webhooks/sandbox", transport=ScriptedTransport())
    return sandbox.authenticate(body=event.body, headers=headers.headers(event.body))


# --- several refunds ---------------------------------------------------------------------------


def test_a_payment_takes_several_partial_refunds_up_to_its_amount(sandbox):
    # given: a paid payment of 15.00
    reference = paid_payment(sandbox)
    # when: 5.00 and 7.00 are refunded under two keys
    first = sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    second = sandbox.refund(reference=reference, amount_minor=700, idempotency_key="line-2")
    # then: two refunds with their own ids and amounts; the payment is still paid
    assert first.refund_id != second.refund_id
    assert (first.amount_minor, second.amount_minor) == (500, 700)
    assert first.status == second.status == PaymentStatus.REFUNDED
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID
    # and: a retry of a key returns its refund, and refunds nothing more
    assert sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1") == first
    # when: 4.00 more is asked (3.00 is left)
    with pytest.raises(ProviderError, match="exceeds the payment") as caught:
        sandbox.refund(reference=reference, amount_minor=400, idempotency_key="line-3")
    # then: refused for good, and the payment is still paid
    assert (caught.value.http_status, caught.value.retryable) == (400, False)
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID
    # when: the last 3.00 is refunded
    last = sandbox.refund(reference=reference, amount_minor=300, idempotency_key="line-3")
    # then: the refunds add up to the payment, which is now refunded
    assert last.amount_minor == 300
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.REFUNDED


def test_a_key_used_again_for_another_amount_is_refused(sandbox):
    reference = paid_payment(sandbox)
    sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    with pytest.raises(ProviderError, match="was used for a refund of 500") as caught:
        sandbox.refund(reference=reference, amount_minor=600, idempotency_key="line-1")
    assert (caught.value.http_status, caught.value.retryable) == (409, False)
    assert sandbox.refund(reference=reference, amount_minor=1000, idempotency_key="line-2").amount_minor == 1000


def test_the_same_key_on_two_payments_makes_two_refunds(sandbox):
    one, other = paid_payment(sandbox), paid_payment(sandbox)
    first = sandbox.refund(reference=one, amount_minor=500, idempotency_key="refund-1")
    second = sandbox.refund(reference=other, amount_minor=500, idempotency_key="refund-1")
    assert first.refund_id != second.refund_id


# --- one event per refund ----------------------------------------------------------------------


def test_each_refund_has_its_own_event_with_its_id_and_the_cumulative_amount(sandbox, secret):
    # given: two partial refunds of one payment
    reference = paid_payment(sandbox)
    first = sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    second = sandbox.refund(reference=reference, amount_minor=700, idempotency_key="line-2")
    # when: the provider announces each
    first_event = sandbox.refunded_event(reference=reference, refund_id=first.refund_id)
    second_event = sandbox.refunded_event(reference=reference, refund_id=second.refund_id)
    # then: two events (the ledger dedupes on the event id), each naming its refund, with the
    # amount refunded so far (5.00, then 12.00), as Stripe's amount_refunded
    assert first_event.event_id != second_event.event_id
    one, two = delivered(sandbox, secret, first_event), delivered(sandbox, secret, second_event)
    assert (one.status, one.refund_id, one.amount_minor, one.currency) == (
        PaymentStatus.REFUNDED,
        first.refund_id,
        500,
        "EUR",
    )
    assert (two.status, two.refund_id, two.amount_minor, two.currency) == (
        PaymentStatus.REFUNDED,
        second.refund_id,
        1200,
        "EUR",
    )
    assert one.reference == two.reference == one.payment_id == reference
    assert json.loads(second_event.body)["data"]["refund_amount_minor"] == 700
    # and: announcing a refund again repeats its event id and content (a redelivery)
    repeated = sandbox.refunded_event(reference=reference, refund_id=first.refund_id)
    assert repeated.event_id == first_event.event_id
    assert delivered(sandbox, secret, repeated).amount_minor == 500


def test_without_a_refund_id_the_event_is_the_latest_refunds(sandbox, secret):
    reference = paid_payment(sandbox)
    sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    latest = sandbox.refund(reference=reference, amount_minor=1000, idempotency_key="line-2")
    event = sandbox.refunded_event(reference=reference)
    assert event.event_id == sandbox.refunded_event(reference=reference, refund_id=latest.refund_id).event_id
    envelope = delivered(sandbox, secret, event)
    assert (envelope.refund_id, envelope.amount_minor) == (latest.refund_id, PAYMENT)


def test_events_of_a_payment_without_that_refund_are_refused(sandbox):
    reference = paid_payment(sandbox)
    with pytest.raises(ProviderError, match="not refunded") as nothing:
        sandbox.refunded_event(reference=reference)
    assert nothing.value.http_status == 409
    sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    with pytest.raises(ProviderError, match="no refund re_sbx_other") as unknown:
        sandbox.refunded_event(reference=reference, refund_id="re_sbx_other")
    assert unknown.value.http_status == 404


def test_a_failed_refund_counts_no_more_and_its_event_names_it_with_the_reason(sandbox, secret):
    # given: the whole payment refunded in two parts (5.00, then 10.00)
    reference = paid_payment(sandbox)
    first = sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-1")
    sandbox.refund(reference=reference, amount_minor=1000, idempotency_key="line-2")
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.REFUNDED
    # when: the first refund fails at the provider, and the provider says so twice, the second
    # time a few seconds later (the same event: made when the refund failed)
    failed = sandbox.fail_refund(reference=reference, refund_id=first.refund_id, reason="lost_or_stolen_card")
    later = time.time() + 5
    sandbox._now = lambda: later
    again = sandbox.fail_refund(reference=reference, refund_id=first.refund_id, reason="lost_or_stolen_card")
    # then: one event, naming the refund, its amount and why
    assert again == failed
    envelope = delivered(sandbox, secret, failed)
    assert (envelope.status, envelope.refund_id, envelope.refund_amount_minor, envelope.refund_failure) == (
        PaymentStatus.REFUND_FAILED,
        first.refund_id,
        500,
        "lost_or_stolen_card",
    )
    # and: its 5.00 is no longer refunded: the payment is not refunded whole, and 5.00 can be
    # refunded again (not more), and the latest refund's event is still that of a refund
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID
    with pytest.raises(ProviderError, match="exceeds"):
        sandbox.refund(reference=reference, amount_minor=600, idempotency_key="line-3")
    third = sandbox.refund(reference=reference, amount_minor=500, idempotency_key="line-3")
    latest = delivered(sandbox, secret, sandbox.refunded_event(reference=reference))
    assert (latest.refund_id, latest.amount_minor) == (third.refund_id, 1500)
    with pytest.raises(ProviderError, match="has no refund"):
        sandbox.fail_refund(reference=reference, refund_id="re_sbx_unknown")


def test_only_refunded_events_carry_a_refund_id(sandbox, secret):
    facts: dict[str, Any] = {"reference": "sbx_1", "checkout_id": "1", "amount_minor": PAYMENT, "currency": "EUR"}
    # a paid event whose body names a refund id anyway: the envelope does not take it
    body = json.loads(build_event(status=PaymentStatus.PAID, **facts).body)
    body["data"]["refund_id"] = "re_sbx_1"
    forged = SandboxEvent(body["id"], body["type"], json.dumps(body).encode())
    assert delivered(sandbox, secret, forged).refund_id is None
    with pytest.raises(ValueError, match="only a refund's event"):
        build_event(status=PaymentStatus.PAID, refund_id="re_sbx_1", **facts)
    # a refunded event built without a refund (an old-style event) has none either
    assert delivered(sandbox, secret, build_event(status=PaymentStatus.REFUNDED, **facts)).refund_id is None


@pytest.mark.usefixtures("empty_broker")
def test_announce_refund_sends_the_event_of_the_refund_it_is_given():
    # given: the registry's sandbox (what refund_submit uses) with two refunds of one payment
    sandbox = get_provider("sandbox")
    assert isinstance(sandbox, SandboxProvider)
    reference = paid_payment(sandbox)
    first = sandbox.refund(reference=reference, amount_minor=500, idempotency_key=f"a:{uuid.uuid4()}")
    second = sandbox.refund(reference=reference, amount_minor=700, idempotency_key=f"b:{uuid.uuid4()}")
    # when: the first refund is announced, then one without naming a refund
    named = sandbox_announce_refund(reference=reference, refund_id=first.refund_id)
    unnamed = sandbox_announce_refund(reference=reference)
    # then: the deliveries carry the first refund's event, then the latest refund's
    assert {d.event.event_id for d in named} == {
        sandbox.refunded_event(reference=reference, refund_id=first.refund_id).event_id
    }
    assert {json.loads(d.event.body)["data"]["refund_id"] for d in named} == {first.refund_id}
    assert {json.loads(d.event.body)["data"]["refund_id"] for d in unnamed} == {second.refund_id}


# --- races -------------------------------------------------------------------------------------


class CompetingCache:
    """The real cache, except that the first `add` of a refund slot first lets `competitor` run
    to the end: a concurrent refund that checked the same total and wins the race for the slot."""

    def __init__(self, competitor: Callable[[], RefundResult]) -> None:
        self._competitor = competitor
        self.competitor_result: RefundResult | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(cache, name)

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        if ":refund:" in key and self.competitor_result is None:
            self.competitor_result = self._competitor()
        return cache.add(key, value, timeout=timeout)


def test_a_refund_that_loses_the_race_is_checked_against_the_winner(sandbox, secret):
    # given: a paid 15.00, and a competitor refunding 10.00 right after our 10.00 passed its check
    reference = paid_payment(sandbox)
    competing = CompetingCache(lambda: sandbox.refund(reference=reference, amount_minor=1000, idempotency_key="theirs"))
    ours = SandboxProvider(webhook_secrets=[secret], public_base_url="http://x", cache=competing)  # type: ignore[arg-type]
    # when: our refund of 10.00 reaches the cache second
    with pytest.raises(ProviderError, match="exceeds the payment") as caught:
        ours.refund(reference=reference, amount_minor=1000, idempotency_key="ours")
    # then: refused (10.00 + 10.00 > 15.00); only the competitor's refund exists
    assert caught.value.http_status == 400
    assert competing.competitor_result is not None
    latest = delivered(sandbox, secret, sandbox.refunded_event(reference=reference))
    assert (latest.refund_id, latest.amount_minor) == (competing.competitor_result.refund_id, 1000)
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID


def test_a_retry_that_loses_the_race_to_its_own_first_attempt_returns_that_refund(sandbox, secret):
    # given: the same refund (same key) sent twice at once
    reference = paid_payment(sandbox)
    competing = CompetingCache(lambda: sandbox.refund(reference=reference, amount_minor=600, idempotency_key="k"))
    ours = SandboxProvider(webhook_secrets=[secret], public_base_url="http://x", cache=competing)  # type: ignore[arg-type]
    # when
    result = ours.refund(reference=reference, amount_minor=600, idempotency_key="k")
    # then: one refund, returned to both
    assert result == competing.competitor_result
    assert sandbox.refund(reference=reference, amount_minor=900, idempotency_key="rest").amount_minor == 900
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.REFUNDED


def test_concurrent_refunds_from_threads_never_exceed_the_payment(sandbox):
    # given: a paid 15.00 and ten threads refunding 2.00 each under their own keys
    reference = paid_payment(sandbox)
    threads_count = 10
    barrier = threading.Barrier(threads_count)
    accepted: list[RefundResult] = []
    refused: list[ProviderError] = []
    lock = threading.Lock()

    def refund(number: int) -> None:
        barrier.wait()
        try:
            result = sandbox.refund(reference=reference, amount_minor=200, idempotency_key=f"line-{number}")
        except ProviderError as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                accepted.append(result)

    threads = [threading.Thread(target=refund, args=(number,)) for number in range(threads_count)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then: exactly seven fit (14.00); the other three are refused as exceeding the payment
    assert len(accepted) == 7 and len({result.refund_id for result in accepted}) == 7
    assert [exc.http_status for exc in refused] == [400, 400, 400]
    # and: the provider's refunds are exactly the accepted ones, 14.00 in total
    totals = sorted(
        json.loads(sandbox.refunded_event(reference=reference, refund_id=result.refund_id).body)["data"]["amount_minor"]
        for result in accepted
    )
    assert totals == [200, 400, 600, 800, 1000, 1200, 1400]
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID
