"""Strange paid events never pay a checkout for the wrong money.

For each example a fresh checkout of one download (EUR 9.00) waits for its payment, through the
sandbox or through Flutterwave (its API answered by a local fake). The provider's real paid event
for it has its amount, currency, status, checkout id and reference replaced (a cent more or less,
a string, a float, null, another currency, another checkout, missing...): every single change on
its own, then combinations drawn by hypothesis. It is signed with the provider's real scheme,
delivered through the endpoint and processed by the real consumer. Whatever the processing
decides, the books must agree:

* the checkout is paid only by a paid event whose amount is the checkout's total and whose
  currency is the checkout's (found: a sandbox paid event whose amount did not parse, `[900]` or
  `9.0`, paid the checkout, its amount taken as "not said"), and that names the checkout's own
  session or none (found: one naming session `sbx_other` paid the checkout it named);
* entitlements exist exactly when the checkout is paid, and the photographer's wallet is
  credited exactly then, once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apps.commerce.models import Checkout, Entitlement, Refund
from apps.ledger.models import LedgerEvent
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox, sandbox_paid, system_count
from tests.payments import signing_helpers as sign
from tests.payments.provider_transport import JsonHandler, serving
from tests.payments.test_webhook_endpoint import post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

TOTAL_MINOR = 900  # the shop's download price, EUR


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


KEEP = _Marker("KEEP")  # leave the member as the provider wrote it
DROP = _Marker("DROP")  # remove the member
OTHER_CHECKOUT = _Marker("OTHER_CHECKOUT")  # a checkout id that exists nowhere


@dataclass(frozen=True)
class Provider:
    """How one provider's paid event looks: where its members are and what they mean."""

    name: str
    paid_body: Callable[[str], bytes]  # checkout id -> the provider's paid event for it
    headers: Callable[[bytes], dict[str, str]]
    members: dict[str, tuple[str, ...]]  # member -> path in the document
    variants: dict[str, list[Any]]
    paid: Callable[[dict[str, Any]], bool]  # does the document still say "paid"?
    minor_units: Callable[[str | int | float], Decimal]  # the amount member in minor units (raises if unreadable)
    # does the document name no session, or the checkout's own? (document, checkout id)
    own_session: Callable[[dict[str, Any], str], bool]


def _get(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    for step in path:
        document = document.get(step) if isinstance(document, dict) else None
    return document


SANDBOX = Provider(
    name="sandbox",
    paid_body=lambda checkout_id: sandbox_paid(checkout_id).body,
    headers=sign.sandbox_headers,
    members={
        "amount": ("data", "amount_minor"),
        "currency": ("data", "currency"),
        "status": ("type",),
        "checkout": ("data", "checkout_id"),
        "reference": ("data", "reference"),
    },
    variants={
        "amount": [899, 901, 0, -900, "900", 900.0, 900.5, 9.0, 10**30, [900], {"value": 900}],
        "currency": ["eur", "USD", "EU", "", 978, ["EUR"]],
        "status": ["payment.failed", "payment.refunded", "payment.paid ", "PAYMENT.PAID", 1],
        "checkout": [OTHER_CHECKOUT, "", 5, "not-a-uuid"],
        "reference": ["sbx_other", "", 7],
    },
    paid=lambda document: document.get("type") == "payment.paid",
    minor_units=lambda amount: Decimal(str(amount)),
    own_session=lambda document, checkout_id: (
        _get(document, ("data", "reference")) in (None, "", f"sbx_{checkout_id}")
        or not isinstance(_get(document, ("data", "reference")), str | int)
    ),
)
FLUTTERWAVE = Provider(
    name="flutterwave",
    paid_body=lambda checkout_id: sign.flutterwave_charge_completed(checkout_id=checkout_id, amount="9.00"),
    headers=sign.flutterwave_headers,
    members={
        "amount": ("data", "amount"),
        "currency": ("data", "currency"),
        "status": ("data", "status"),
        "checkout": ("data", "tx_ref"),
        "event": ("event",),
    },
    variants={
        "amount": ["9.01", "8.99", "900", 9, 9.0, "9.001", "9.00 ", "0", "-9.00", "1e400", [9], {"amount": "9.00"}],
        "currency": ["eur", "USD", "EU", "", 978, ["EUR"]],
        "status": ["failed", "pending", "SUCCESSFUL", "succeeded", "", 1],
        "checkout": [OTHER_CHECKOUT, "", 5, "not-a-uuid"],
        "event": ["charge.failed", "transfer.completed", "", 1],
    },
    paid=lambda document: (
        document.get("event") == "charge.completed"
        and str(_get(document, ("data", "status"))).lower() in ("successful", "succeeded")
    ),
    minor_units=lambda amount: Decimal(str(amount).strip()) * 100,
    own_session=lambda document, checkout_id: True,  # its session is its tx_ref, the checkout id itself
)
PROVIDERS = {provider.name: provider for provider in (SANDBOX, FLUTTERWAVE)}


def _mutate(body: bytes, provider: Provider, mutations: dict[str, Any]) -> bytes:
    document = json.loads(body)
    for member, value in mutations.items():
        *parents, last = provider.members[member]
        holder = document
        for step in parents:
            holder = holder[step]
        if value is KEEP:
            continue
        if value is DROP:
            holder.pop(last, None)
        else:
            holder[last] = str(uuid.uuid4()) if value is OTHER_CHECKOUT else value
    if "id" in document:
        document["id"] = f"evt_{uuid.uuid4().hex}"  # every delivery is a new event
    if isinstance(document.get("data"), dict) and "id" in document["data"] and provider is FLUTTERWAVE:
        document["data"]["id"] = uuid.uuid4().int % 10**9  # Flutterwave's event id derives from it
    return json.dumps(document).encode()


def _same_money(provider: Provider, document: dict[str, Any], *, amount_minor: int, currency: str) -> bool:
    amount = _get(document, provider.members["amount"])
    code = _get(document, provider.members["currency"])
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return False
    try:
        same_amount = provider.minor_units(amount) == amount_minor
    except ArithmeticError:
        return False
    return same_amount and isinstance(code, str) and code.upper() == currency


class _FlutterwaveApi(JsonHandler):
    """Flutterwave's v3 API as far as these checkouts need it: the hosted payment link, the
    transactions Flutterwave holds (`charged`, by id: what `GET /transactions/<id>/verify`
    answers; the transaction by reference for a refund) and refunds."""

    charged: dict[str, dict[str, Any]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/payments"):
            self.send_json(200, {"status": "success", "data": {"link": "https://checkout.flutterwave.test/pay/x"}})
        else:  # /transactions/<id>/refund
            refund = {"id": uuid.uuid4().int % 10**9, "status": "completed"}
            self.send_json(200, {"status": "success", "data": refund})

    def do_GET(self) -> None:
        if "/verify_by_reference" not in self.path:  # /transactions/<id>/verify
            transaction_id = self.path.rstrip("/").split("/")[-2]
            if transaction_id not in self.charged:
                self.send_json(404, {"status": "error", "message": "No transaction was found for this id"})
            else:
                self.send_json(200, {"status": "success", "data": self.charged[transaction_id]})
            return
        data = {"id": 7, "status": "successful", "amount": "9.00", "currency": "EUR"}
        self.send_json(200, {"status": "success", "data": data})


def flutterwave_holds(body: bytes, **api_says: Any) -> None:
    """Make the fake's API hold the charge a `charge.completed` body reports, as reported or with
    `api_says` in place of its members (what Flutterwave's records say, whatever the body said)."""
    data = json.loads(body).get("data")
    if isinstance(data, dict) and isinstance(data.get("id"), int | str):
        _FlutterwaveApi.charged[str(data["id"])] = {**data, **api_says}


@pytest.fixture
def flutterwave_api() -> Iterator[None]:
    _FlutterwaveApi.charged = {}
    with serving(_FlutterwaveApi) as url, override_settings(FLUTTERWAVE_API_BASE=f"{url}/v3"):
        yield


def _single_changes(provider: Provider) -> list[dict[str, Any]]:
    """Every single-member change on its own, the others as the provider wrote them."""
    return [
        {**dict.fromkeys(provider.members, KEEP), member: value}
        for member, values in provider.variants.items()
        for value in [DROP, None, *values]
    ]


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_strange_paid_events_never_pay_for_the_wrong_money(name: str, tenant_a, shop, flutterwave_api) -> None:
    provider = PROVIDERS[name]
    client = tenant_a.client()
    mutations_of = st.fixed_dictionaries(
        {member: st.sampled_from([KEEP, KEEP, DROP, None, *values]) for member, values in provider.variants.items()}
    )

    @settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutations=mutations_of)
    def deliver_and_process(mutations: dict[str, Any]) -> None:
        # given: a checkout waiting for its payment, and the provider's paid event for it, changed
        body = checkout_body(shop, {"product": shop.download.pk}, provider=provider.name)
        checkout_id = post_checkout(client, body).json()["id"]
        drain_outbox()  # its payment session (and any refund an earlier example asked for)
        event = _mutate(provider.paid_body(checkout_id), provider, mutations)
        if provider is FLUTTERWAVE:
            flutterwave_holds(event)  # Flutterwave's API confirms what its event says
        # when: it is delivered and processed (a failure is recorded on the event, not raised)
        response = post(provider.name, event, provider.headers(event))
        assert response.status_code in (200, 400), response.content[:300]
        try:
            drain_outbox(topics={"webhook.received"})
        except Exception:  # noqa: BLE001 - a retryable failure: recorded on the event, retried by Celery
            pass
        # then: paid only for the right money; entitlements and one wallet credit exactly when paid
        with tenant_context(tenant_a.org.pk):
            checkout = Checkout.objects.get(pk=checkout_id)
            entitlements = Entitlement.objects.filter(checkout_id=checkout_id).count()
        document = json.loads(event)
        is_paid = checkout.status == Checkout.Status.PAID
        if is_paid:
            assert provider.paid(document), mutations
            assert _same_money(provider, document, amount_minor=TOTAL_MINOR, currency="EUR"), mutations
            assert provider.own_session(document, checkout_id), mutations
        assert (entitlements > 0) == is_paid, (checkout.status, mutations)
        credits = system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}"))
        assert credits == (1 if is_paid else 0), (credits, mutations)

    for change in _single_changes(provider):
        deliver_and_process = example(mutations=change)(deliver_and_process)
    deliver_and_process()


def flutterwave_checkout(tenant: Any, shop: Any) -> str:
    """A Flutterwave checkout of one download (EUR 9.00) waiting for its payment."""
    checkout_id = post_checkout(
        tenant.client(), checkout_body(shop, {"product": shop.download.pk}, provider="flutterwave")
    ).json()["id"]
    drain_outbox()
    return checkout_id


def flutterwave_delivers(body: bytes) -> None:
    """Flutterwave's signed webhook delivery of `body`, processed by the consumer (the charge it
    reports held by Flutterwave's API as reported, unless the test said otherwise)."""
    data = json.loads(body).get("data") or {}
    if str(data.get("id")) not in _FlutterwaveApi.charged:
        flutterwave_holds(body)
    assert post("flutterwave", body, sign.flutterwave_headers(body)).status_code == 200
    drain_outbox(topics={"webhook.received"})


def test_a_failed_flutterwave_attempt_leaves_the_checkout_open_for_the_shoppers_next_try(
    tenant_a, shop, flutterwave_api
) -> None:
    # given: a Flutterwave checkout; on the hosted page the shopper's first card is declined
    checkout_id = flutterwave_checkout(tenant_a, shop)
    flutterwave_delivers(sign.flutterwave_charge_completed(checkout_id=checkout_id, status="failed"))
    # then: the checkout still awaits payment (its stock kept), nothing refunded
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.AWAITING_PAYMENT
    # when: the next card is charged under the same tx_ref
    flutterwave_delivers(sign.flutterwave_charge_completed(checkout_id=checkout_id))
    # then: paid and fulfilled, with no refund
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.PAID
        assert Entitlement.objects.filter(checkout_id=checkout_id).count() == 1
        assert not Refund.objects.filter(transaction__checkout_id=checkout_id).exists()


def test_a_flutterwave_refund_naming_no_currency_is_read_in_the_payments_currency(
    tenant_a, shop, flutterwave_api
) -> None:
    # given: a paid Flutterwave checkout of one download (EUR 9.00)
    checkout_id = flutterwave_checkout(tenant_a, shop)
    flutterwave_delivers(sign.flutterwave_charge_completed(checkout_id=checkout_id))
    # when: the studio refunds 4.00 in Flutterwave's dashboard, and its refund.completed names no
    # currency (as Flutterwave's refund objects may not)
    refund = {"id": 609_777, "amount_refunded": 4, "status": "completed", "tx_ref": checkout_id}
    flutterwave_delivers(json.dumps({"event": "refund.completed", "data": refund}).encode())
    # then: 4.00 EUR went back, recorded as refunded at the provider; the order is still paid and
    # its download still the shopper's (it was not read as the whole payment)
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.PAID
        [part] = Refund.objects.filter(transaction__checkout_id=checkout_id)
        assert Entitlement.objects.get(checkout_id=checkout_id).revoked_at is None
    assert (part.reason, part.amount_minor, part.currency, part.provider_refund_id) == (
        "provider_partial",
        400,
        "EUR",
        "609777",
    )


@pytest.mark.parametrize(
    "api_says",
    [
        {"status": "failed"},
        {"status": "pending"},
        {"amount": 0.9},
        {"currency": "NGN"},
        {"tx_ref": "another-checkout"},
        "unknown transaction",
    ],
    ids=["failed", "pending", "another-amount", "another-currency", "another-tx-ref", "unknown-transaction"],
)
def test_a_flutterwave_paid_event_pays_only_what_flutterwaves_api_confirms(
    api_says, tenant_a, shop, flutterwave_api
) -> None:
    # given: a Flutterwave checkout (EUR 9.00) and a signed charge.completed saying 9.00 EUR
    # successful, which Flutterwave's own records (its verify API) contradict
    checkout_id = flutterwave_checkout(tenant_a, shop)
    body = sign.flutterwave_charge_completed(checkout_id=checkout_id)
    if api_says != "unknown transaction":
        flutterwave_holds(body, **api_says)
    # when: it is delivered and processed
    assert post("flutterwave", body, sign.flutterwave_headers(body)).status_code == 200
    try:
        drain_outbox(topics={"webhook.received"})
    except Exception:  # noqa: BLE001 - a retryable failure: recorded on the event, retried by Celery
        pass
    # then: the checkout is not paid: no download, no wallet credit
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status != Checkout.Status.PAID
        assert not Entitlement.objects.filter(checkout_id=checkout_id).exists()
    assert system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}")) == 0
