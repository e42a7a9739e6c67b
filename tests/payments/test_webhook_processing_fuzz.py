"""Signed but strange events for a real checkout: processed without a crash, never paid wrongly.

For each provider a fresh checkout of one download (EUR 9.00) waits for its payment in its own
provider session. The provider's real paid event for it is changed by hypothesis (any member
replaced by another JSON value or removed, and the money members set to strange values: huge,
negative, fractional or float amounts, unknown or malformed currencies, long strings, NULs),
signed with the provider's real scheme, posted to the endpoint and processed by the real
consumer (Flutterwave's verify API answered by a local fake that confirms what the event says).

* the endpoint answers 200 or a 400 problem, never a 5xx;
* processing ends `processed`, `ignored` or `failed` with a domain error (never a database
  error, a TypeError...): a crash is retried for nothing and alerts for nothing;
* the checkout is paid only when the event is genuinely its payment: a paid event of its own
  session (or none named), for 900 minor units of EUR; entitlements and exactly one wallet
  credit exactly then; nothing is ever refunded to the checkout's books except a refund of a
  charge of another amount or currency (a positive amount, an ISO 4217 code).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.commerce.models import Checkout, Entitlement, Refund
from apps.ledger.models import LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.http import HttpRequest, HttpResponse
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox, system_count
from tests.payments import signing_helpers as sign
from tests.payments.provider_transport import json_response, use_stripe
from tests.payments.test_webhook_endpoint import post
from tests.payments.test_webhook_fuzz import JSON_VALUES, _paths
from tests.payments.test_webhook_money_fuzz import flutterwave_api, flutterwave_holds  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

TOTAL_MINOR = 900  # the shop's download price, EUR
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))

# Errors a stored event may fail with (recorded on it; the retryable ones raised to the consumer).
DOMAIN_FAILURES = frozenset(
    {
        "PaymentForUnknownCheckout",
        "ProviderMismatch",
        "SessionMismatch",
        "PaidWithoutAmount",
        "WebhookPayloadError",
        "PartialRefundUnnamed",
        "RefundNotRecordedYet",
        "RefundCurrencyMismatch",
        "RefundAmountUnreadable",
        "ProviderError",
    }
)

STRANGE_AMOUNTS = st.sampled_from(
    [
        *(899, 901, 0, -900, 9, 900.0, 9.0, "9.00", "900", "9.001", "-9.00", "0.00", "1e400", "NaN", "Infinity"),
        *(2**63, 2**63 - 1, -(2**63), 10**30, 10**20, True, None, [900], {"value": 900}, "9.00\u0000"),
    ]
)
STRANGE_CURRENCIES = st.sampled_from(
    [
        "EUR",
        "eur",
        "USD",
        "JPY",
        "KWD",
        "XYZ",
        "EU",
        "EURO",
        "",
        "€",
        "e\u0000r",
        "\ud800",
        978,
        None,
        ["EUR"],
        "A" * 300,
    ]
)
STRANGE_IDS = st.sampled_from(["", "x" * 300, "a\u0000b", 12, None, str(uuid.uuid4()), "🙂" * 40])


@dataclass(frozen=True)
class Provider:
    """One provider's paid event for a checkout, and where its members are."""

    name: str
    paid_body: Callable[[str, str], bytes]  # (checkout id, stored session reference) -> the event
    headers: Callable[[bytes], dict[str, str]]
    amount: tuple[Any, ...]
    currency: tuple[Any, ...]
    ids: tuple[tuple[Any, ...], ...]  # event id, session, checkout id paths
    kind: tuple[Any, ...]  # the member naming the event's type (what it says happened)
    # Does the (mutated) document say "paid", for exactly the checkout's money, in its session?
    genuine: Callable[[dict[str, Any], str, str], bool]


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(document, dict):
            document = document.get(step)
        elif isinstance(document, list) and isinstance(step, int) and -len(document) <= step < len(document):
            document = document[step]
        else:
            return None
    return document


def _minor(value: Any, *, major: bool) -> Decimal | None:
    """The amount a member states in minor units of EUR, exactly; None if it states none."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if not major and not isinstance(value, int):
        return None  # Stripe and the sandbox count in integers of minor units
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount * 100 if major else amount


def _eur(value: Any) -> bool:
    return isinstance(value, str) and value.upper() == "EUR"


def _stripe_body(checkout_id: str, session: str) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "checkout.session.completed",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": session,
                    "object": "checkout.session",
                    "client_reference_id": checkout_id,
                    "payment_status": "paid",
                    "status": "complete",
                    "amount_total": TOTAL_MINOR,
                    "currency": "eur",
                    "payment_intent": f"pi_{uuid.uuid4().hex[:14]}",
                    "metadata": {"checkout_id": checkout_id},
                }
            },
        }
    ).encode()


def _stripe_genuine(document: dict[str, Any], checkout_id: str, session: str) -> bool:
    obj = _get(document, ("data", "object"))
    settled = _get(obj, ("payment_status",)) in ("paid", "no_payment_required")
    says_paid = document.get("type") == "checkout.session.async_payment_succeeded" or (
        document.get("type") == "checkout.session.completed" and settled
    )
    return says_paid and (
        _minor(_get(obj, ("amount_total",)), major=False) == TOTAL_MINOR
        and _eur(_get(obj, ("currency",)))
        and _get(obj, ("id",)) in (None, "", session)
    )


def _paypal_body(checkout_id: str, session: str) -> bytes:
    return sign.paypal_capture_completed(checkout_id=checkout_id, order_id=session)


def _paypal_genuine(document: dict[str, Any], checkout_id: str, session: str) -> bool:
    resource = _get(document, ("resource",))
    return (
        document.get("event_type") == "PAYMENT.CAPTURE.COMPLETED"
        and _minor(_get(resource, ("amount", "value")), major=True) == TOTAL_MINOR
        and _eur(_get(resource, ("amount", "currency_code")))
        and _get(resource, ("supplementary_data", "related_ids", "order_id")) in (None, "", session)
    )


def _flutterwave_genuine(document: dict[str, Any], checkout_id: str, session: str) -> bool:
    data = _get(document, ("data",))
    return (
        (document.get("event") or document.get("type")) == "charge.completed"
        and str(_get(data, ("status",))).lower() in ("successful", "succeeded")
        and _minor(_get(data, ("amount",)), major=True) == TOTAL_MINOR
        and _eur(_get(data, ("currency",)))
    )


def sandbox_body_for(checkout_id: str) -> bytes:
    event = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout_id}",
        checkout_id=checkout_id,
        amount_minor=TOTAL_MINOR,
        currency="EUR",
    )
    return event.body


def _sandbox_genuine(document: dict[str, Any], checkout_id: str, session: str) -> bool:
    data = _get(document, ("data",))
    return (
        document.get("type") == "payment.paid"
        and _minor(_get(data, ("amount_minor",)), major=False) == TOTAL_MINOR
        and _eur(_get(data, ("currency",)))
        and _get(data, ("reference",)) in (None, "", session)
    )


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider(
            name="stripe",
            kind=("type",),
            paid_body=_stripe_body,
            headers=lambda body: sign.stripe_headers(body, secret="whsec_local"),  # use_stripe's secret
            amount=("data", "object", "amount_total"),
            currency=("data", "object", "currency"),
            ids=(("id",), ("data", "object", "id"), ("data", "object", "client_reference_id")),
            genuine=_stripe_genuine,
        ),
        Provider(
            name="paypal",
            kind=("event_type",),
            paid_body=_paypal_body,
            headers=lambda body: sign.paypal_headers(body, PAYPAL_KEY),
            amount=("resource", "amount", "value"),
            currency=("resource", "amount", "currency_code"),
            ids=(("id",), ("resource", "supplementary_data", "related_ids", "order_id"), ("resource", "custom_id")),
            genuine=_paypal_genuine,
        ),
        Provider(
            name="flutterwave",
            kind=("data", "status"),
            paid_body=lambda checkout_id, session: sign.flutterwave_charge_completed(checkout_id=checkout_id),
            headers=sign.flutterwave_headers,
            amount=("data", "amount"),
            currency=("data", "currency"),
            ids=(("data", "id"), ("data", "tx_ref"), ("data", "tx_ref")),
            genuine=_flutterwave_genuine,
        ),
        Provider(
            name="sandbox",
            kind=("type",),
            paid_body=lambda checkout_id, session: sandbox_body_for(checkout_id),
            headers=sign.sandbox_headers,
            amount=("data", "amount_minor"),
            currency=("data", "currency"),
            ids=(("id",), ("data", "reference"), ("data", "checkout_id")),
            genuine=_sandbox_genuine,
        ),
    )
}
PAYPAL_KEY = sign.paypal_key()


class ProviderSessions:
    """Stripe's and PayPal's APIs as far as creating a checkout's session goes, in their real
    formats (a Checkout Session; an OAuth token and an order with its payer-action link)."""

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        if request.url.endswith("/v1/checkout/sessions"):
            session = f"cs_test_{uuid.uuid4().hex}"
            return json_response(
                {"id": session, "object": "checkout.session", "url": f"https://checkout.stripe.com/c/pay/{session}"}
            )
        if request.url.endswith("/v1/oauth2/token"):
            return json_response({"access_token": "token-1", "token_type": "Bearer", "expires_in": 32400})
        if request.url.endswith("/v2/checkout/orders"):
            order = f"ORDER{uuid.uuid4().hex[:12].upper()}"
            link = {"rel": "payer-action", "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order}"}
            return json_response({"id": order, "status": "PAYER_ACTION_REQUIRED", "links": [link]}, status=201)
        raise AssertionError(f"unexpected request {request.method} {request.url}")


@st.composite
def strange_events(draw: st.DrawFn, provider: Provider, valid: dict[str, Any]) -> dict[str, Any]:
    """The valid event with its money members set to strange values and up to three members
    anywhere replaced by any JSON value or removed."""
    document = json.loads(json.dumps(valid))
    targeted: list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]] = [
        (provider.amount, STRANGE_AMOUNTS),
        (provider.currency, STRANGE_CURRENCIES),
        *((path, STRANGE_IDS) for path in provider.ids),
    ]
    for path, values in targeted:
        if draw(st.integers(min_value=0, max_value=3)) == 0:  # a quarter of the time each
            *parents, last = path
            holder = _get(document, tuple(parents))
            if isinstance(holder, dict):
                holder[last] = draw(values)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _get(document, path[:-1]) if path[:-1] else document
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        elif isinstance(parent, dict | list):
            parent[path[-1]] = draw(JSON_VALUES)
    return document


def _dumps(document: dict[str, Any]) -> bytes:
    # allow_nan for a float the strategies drew; a lone surrogate travels as its JSON escape
    return json.dumps(document).encode()


def _open_checkout(client: Any, shop: Any, provider: str) -> tuple[str, str]:
    """A checkout of one download waiting for its payment in its own session: (id, reference)."""
    checkout_id = post_checkout(client, checkout_body(shop, {"product": shop.download.pk}, provider=provider)).json()[
        "id"
    ]
    drain_outbox()
    with tenant_context(shop.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
    assert checkout.status == Checkout.Status.AWAITING_PAYMENT, checkout.payment_session_error
    return checkout_id, checkout.provider_reference or ""


def _forget_pending_messages() -> None:
    """Drop what processing queued (a refund of a mismatched charge, receipts): its consumers
    are not under test here and would call the providers."""
    with system_context("test"):
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@pytest.mark.usefixtures("flutterwave_api")
def test_strange_signed_events_for_a_real_checkout_never_crash_processing_nor_pay_wrongly(
    name: str, tenant_a, shop, monkeypatch
) -> None:
    provider = PROVIDERS[name]
    client = tenant_a.client()
    transport = ProviderSessions()
    use_stripe(monkeypatch, transport)
    from apps.payments.providers import registry

    registry.get_provider("paypal")._api.transport = transport  # type: ignore[attr-defined]
    if name == "paypal":
        sign.paypal_trust(PAYPAL_KEY)
    template = json.loads(provider.paid_body(str(uuid.uuid4()), "REFERENCE"))

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(document=strange_events(provider, template))
    def deliver_and_process(document: dict[str, Any]) -> None:
        # given: a checkout waiting for its payment, and a strange signed event in its place
        checkout_id, session = _open_checkout(client, shop, name)
        text = json.dumps(document).replace(template_checkout, checkout_id).replace('"REFERENCE"', json.dumps(session))
        mutated = json.loads(text)
        *parents, last = provider.ids[0]
        holder = _get(mutated, tuple(parents)) if parents else mutated
        if isinstance(holder, dict) and holder.get(last) == _get(template, provider.ids[0]):
            holder[last] = uuid.uuid4().int % 10**9 if name == "flutterwave" else f"evt_{uuid.uuid4().hex}"
        body = json.dumps(mutated).encode()
        if name == "flutterwave":
            flutterwave_holds(body)  # Flutterwave's API confirms what its event says
        # when: it is delivered and processed
        response = post(name, body, provider.headers(body))
        assert response.status_code in (200, 400), (response.status_code, body, response.content[:300])
        if response.status_code == 200:
            processed.append(body)
            try:
                drain_outbox(topics={"webhook.received"})
            except Exception as exc:  # noqa: BLE001 - a retryable domain failure is raised to Celery
                assert type(exc).__name__ in DOMAIN_FAILURES, (repr(exc), body)
            with system_context("test"):
                event = WebhookEvent.objects.get(event_id=response.json()["event_id"][:255], provider=name)
            assert event.status in ("processed", "ignored", "failed"), (event.status, body)
            if event.status == "failed":
                assert event.error.split(":", 1)[0] in DOMAIN_FAILURES, (event.error, body)
        _forget_pending_messages()
        # then: paid only for a genuine payment; entitlements and one credit exactly then
        with tenant_context(tenant_a.org.pk):
            checkout = Checkout.objects.get(pk=checkout_id)
            entitlements = Entitlement.objects.filter(checkout_id=checkout_id).count()
            refunds = list(Refund.objects.filter(transaction__checkout_id=checkout_id))
        is_paid = checkout.status == Checkout.Status.PAID
        if is_paid:
            assert provider.genuine(mutated, checkout_id, session), body
        assert checkout.status != Checkout.Status.REFUNDED, body
        assert (entitlements > 0) == is_paid, (checkout.status, body)
        credits = system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}"))
        assert credits == (1 if is_paid else 0), (credits, body)
        for refund in refunds:
            assert refund.reason == Refund.Reason.AMOUNT_MISMATCH, (refund.reason, body)
            assert refund.amount_minor > 0 and len(refund.currency) == 3, body
        if checkout.status == Checkout.Status.FAILED and not refunds:  # no charge to give back
            assert _get(mutated, provider.kind) != _get(template, provider.kind), (checkout.status, body)

    template_checkout = _template_checkout(provider, template)
    processed: list[bytes] = []
    deliver_and_process()
    # A fuzz whose every delivery is refused (a wrong signing secret, say) tests nothing.
    assert processed, f"no {name} event was accepted for processing"


def _template_checkout(provider: Provider, template: dict[str, Any]) -> str:
    return str(_get(template, provider.ids[2]))


# --- what the fuzz above found, pinned ------------------------------------------------------


def _sandbox_paid_with(checkout_id: str, **data: Any) -> bytes:
    document = json.loads(sandbox_body_for(checkout_id))
    document["data"].update(data)
    document["id"] = f"evt_{uuid.uuid4().hex}"
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(0, "EUR"), (-900, "EUR"), (2**63, "EUR"), (10**30, "EUR"), (899, "EURO"), (900, "A" * 300), (900, "€UR")],
    ids=["zero", "negative", "beyond-bigint", "huge", "four-letters", "long", "not-letters"],
)
def test_a_paid_event_whose_charge_cannot_be_read_fails_for_good_and_leaves_the_checkout_open(
    amount, currency, tenant_a, shop
) -> None:
    """Found by the fuzz above: a paid event for nothing or less (0, -900) failed the checkout
    (its stock released, the shopper's session dead) with nothing to refund, and one whose amount
    or currency no refund row can hold (beyond bigint, a currency of four letters) crashed the
    consumer on the mismatch refund's insert (DataError, retried for nothing). Neither says what
    was charged: PaidWithoutAmount, as for a paid event without an amount."""
    # given: a sandbox checkout (EUR 9.00) waiting for its payment
    checkout_id, _ = _open_checkout(tenant_a.client(), shop, "sandbox")
    body = _sandbox_paid_with(checkout_id, amount_minor=amount, currency=currency)
    # when: its signed paid event says that charge, and it is processed
    assert post("sandbox", body, sign.sandbox_headers(body)).status_code == 200
    drain_outbox(topics={"webhook.received"})
    # then: the event failed for good, for an operator; the checkout still waits for its payment,
    # with nothing granted, credited or refunded
    with system_context("test"):
        event = WebhookEvent.objects.get()
    assert event.status == "failed" and event.error.startswith("PaidWithoutAmount:"), event.error
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.AWAITING_PAYMENT
        assert not Entitlement.objects.exists()
        assert not Refund.objects.exists()
    assert system_count(lambda: LedgerEvent.objects.all()) == 0
