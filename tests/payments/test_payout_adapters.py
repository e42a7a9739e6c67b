"""Payouts on the provider adapters: real adapters over real HTTP to local fakes of Stripe
Transfers, PayPal Payouts and Flutterwave Transfers, and the sandbox against real Redis.

Each fake answers in its provider's format and checks what the provider checks (path, method,
auth, idempotency key, body fields and units). Each keeps its own ledger, so a test can assert
that a payout retried after an outage or a timeout was paid exactly once.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache

from apps.payments.providers.base import PayoutDestinationError, PayoutResult, PayoutStatus, ProviderError
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.http import HttpRequest, HttpResponse, UrllibTransport
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.sandbox import SandboxProvider
from apps.payments.providers.stripe import StripeProvider
from tests.payments.provider_transport import JsonHandler, serving

TIMEOUT = 10.0  # seconds; generous, so a busy CI machine never times out a fake that answers
HANG_TIMEOUT = 0.5  # seconds; the client's timeout on the one request a fake is told to hang
Answer = tuple[int, dict[str, Any]]


# --- a fake provider API on loopback ---------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)


class FakeApi:
    """Serves `answer` on 127.0.0.1. `outages[(method, path)]` holds answers given before the
    request reaches the provider (nothing happens there); `hang_next = (method, path)` makes the
    next such answer wait until the client has timed out, after the provider acted on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.reset()

    def reset(self) -> None:
        """Forget everything (one server serves a whole module; each test starts afresh)."""
        self._release.set()  # a request still hanging from the last test answers now
        self._release = threading.Event()
        self.seen: list[Seen] = []
        self.violations: list[str] = []  # requests the real provider would refuse as malformed
        self.outages: dict[tuple[str, str], list[Answer]] = {}
        self.hang_next: tuple[str, str] | None = None

    def answer(self, seen: Seen) -> Answer:
        raise NotImplementedError

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [seen for seen in self.seen if (seen.method, seen.path) == (method, path)]

    @contextmanager
    def running(self) -> Iterator[str]:
        fake = self

        class Handler(JsonHandler):
            def serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                headers = {name.lower(): value for name, value in self.headers.items()}
                seen = Seen(self.command, parts.path, parse_qs(parts.query), headers, body)
                route = (self.command, parts.path)
                with fake._lock:
                    fake.seen.append(seen)
                    outages = fake.outages.get(route)
                    if outages:
                        (status, payload), hang = outages.pop(0), False
                    else:
                        try:
                            (status, payload), hang = fake.answer(seen), fake.hang_next == route
                        except AssertionError as exc:  # the test fails at teardown, whatever it expected
                            fake.violations.append(f"{self.command} {self.path}: {exc}")
                            (status, payload), hang = (400, {"error": f"malformed request: {exc}"}), False
                        fake.hang_next = None if hang else fake.hang_next
                if hang:
                    fake._release.wait(10)
                try:
                    self.send_json(status, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out, as the test wanted

            do_GET = do_POST = serve

        with serving(Handler) as base:
            try:
                yield base
            finally:
                self._release.set()


class ToLoopback:
    """Real HTTP (urllib) to a fake. The adapter's own timeout applies, except to the request the
    fake is told to hang: that one gets `HANG_TIMEOUT`, so the test need not wait long for it."""

    def __init__(self, fake: FakeApi | None) -> None:
        self.fake = fake
        self.http = UrllibTransport()

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        route = (request.method.upper(), urlsplit(request.url).path)
        fake = self.fake
        hangs = fake is not None and fake.hang_next == route and not fake.outages.get(route)
        return self.http.send(request, timeout=HANG_TIMEOUT if hangs else timeout)


def payout_id() -> str:
    return str(uuid.uuid4())


def pay(adapter: Any, pid: str, *, amount_minor: int, currency: str, destination: str) -> PayoutResult:
    return adapter.payout(
        payout_id=pid,
        amount_minor=amount_minor,
        currency=currency,
        destination=destination,
        description="Darkroom payout, Spring Gala",
    )


# --- Stripe: POST /v1/transfers --------------------------------------------------------------

STRIPE_API = "https://api.stripe.com"
STRIPE_KEY = "sk_test_local_" + "p" * 8
ACCOUNT = "acct_1MTfjCQ9PRzxEwkZ"
REUSED_KEY = "Keys for idempotent requests can only be used with the same parameters they were first used with."


class FakeStripe(FakeApi):
    """Stripe's Transfers API (create, list by transfer group) with its idempotency layer: a key
    replays the first answer and refuses other parameters; a transfer needs the platform balance
    to cover it. `forget_keys()` plays the 24 hours after which Stripe forgets idempotency keys."""

    def reset(self) -> None:
        super().reset()
        self.balance = 1_000_000
        self.reverse_new = False
        self.transfers: list[dict[str, Any]] = []
        self._keys: dict[str, tuple[dict[str, str], Answer]] = {}

    def reverse(self, transfer_id: str, amount: int) -> None:
        """The platform reverses (part of) a transfer: the money goes back to its balance, and
        `reversed` turns true only once the whole amount is reversed."""
        transfer = next(t for t in self.transfers if t["id"] == transfer_id)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        self.balance += amount

    def answer(self, seen: Seen) -> Answer:
        if seen.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        if seen.method == "GET" and (match := re.fullmatch(r"/v1/transfers/([^/]+)", seen.path)):
            found = [t for t in self.transfers if t["id"] == match.group(1)]
            if not found:
                message = f"No such transfer: '{match.group(1)}'"
                error = {"type": "invalid_request_error", "code": "resource_missing", "param": "id", "message": message}
                return 404, {"error": error}
            return 200, found[0]
        assert seen.path == "/v1/transfers"
        if seen.method == "GET":  # list transfers, filtered by transfer group
            group = seen.query.get("transfer_group", [None])[0]
            found = [t for t in self.transfers if group is None or t["transfer_group"] == group]
            return 200, {"object": "list", "url": "/v1/transfers", "has_more": False, "data": found[::-1]}
        assert seen.method == "POST"
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        form, key = seen.form(), seen.headers.get("idempotency-key")
        if key in self._keys:
            first, stored = self._keys[key]
            if first != form:
                return 400, {"error": {"type": "idempotency_error", "message": REUSED_KEY}}
            return stored
        assert re.fullmatch(r"[1-9][0-9]*", form["amount"]), "amount is an integer in minor units"
        assert re.fullmatch(r"[a-z]{3}", form["currency"]), "currency is a lower-case ISO code"
        assert form["destination"].startswith("acct_")
        if int(form["amount"]) > self.balance:
            error = {"type": "invalid_request_error", "code": "balance_insufficient", "message": "Insufficient funds."}
            answer: Answer = (400, {"error": error})
        else:
            self.balance -= int(form["amount"])
            transfer = {
                "id": f"tr_{secrets.token_hex(12)}",
                "object": "transfer",
                "amount": int(form["amount"]),
                "amount_reversed": int(form["amount"]) if self.reverse_new else 0,
                "currency": form["currency"],
                "description": form.get("description"),
                "destination": form["destination"],
                "metadata": {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")},
                "reversed": self.reverse_new,
                "transfer_group": form.get("transfer_group"),
            }
            self.transfers.append(transfer)
            answer = (200, transfer)
        if key:
            self._keys[key] = (form, answer)
        return answer

    def forget_keys(self) -> None:
        self._keys.clear()


def test_stripe_payout_retried_after_stripe_forgot_the_key_returns_the_first_transfer(stripe_fake):
    # given: a payout Stripe transferred, and more than a day later (the key forgotten) a retry
    fake, adapter = stripe_fake
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=1800, currency="EUR", destination=ACCOUNT)
    fake.forget_keys()
    # when
    again = pay(adapter, pid, amount_minor=1800, currency="EUR", destination=ACCOUNT)
    # then: the transfer found by its group is returned; no second transfer, no second POST
    assert again == first and len(fake.transfers) == 1
    assert len(fake.requests_to("POST", "/v1/transfers")) == 1
    assert [r.query["transfer_group"] for r in fake.requests_to("GET", "/v1/transfers")] == [[pid], [pid]]


class ToFake:
    """The adapter addresses api.stripe.com; this sends the same request to the fake instead,
    over real HTTP (see `ToLoopback`)."""

    def __init__(self, base: str, *, fake: FakeApi | None = None) -> None:
        self.base = base
        self.http = ToLoopback(fake)

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        assert request.url.startswith(f"{STRIPE_API}/"), request.url
        return self.http.send(replace(request, url=self.base + request.url[len(STRIPE_API) :]), timeout=timeout)


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def stripe_fake(stripe_server) -> Iterator[tuple[FakeStripe, StripeProvider]]:
    fake, base = stripe_server
    fake.reset()
    adapter = StripeProvider(
        secret_key=STRIPE_KEY,
        webhook_secrets=["whsec_unused"],
        transport=ToFake(base, fake=fake),
        timeout=TIMEOUT,
        max_network_retries=0,
    )
    yield fake, adapter
    assert fake.violations == []


def test_stripe_payout_creates_a_transfer_keyed_by_the_payout_id(stripe_fake):
    fake, adapter = stripe_fake
    pid = payout_id()
    # when
    result = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    # then: the transfer Stripe made, paid at once
    [transfer] = fake.transfers
    assert result == PayoutResult(transfer["id"], PayoutStatus.PAID, amount_minor=2500, currency="EUR")
    assert result.provider_payout_id.startswith("tr_")
    # and: one form POST with the payout id as idempotency key, transfer group and metadata
    [request] = fake.requests_to("POST", "/v1/transfers")
    assert request.headers["idempotency-key"] == pid
    assert request.form() == {
        "amount": "2500",
        "currency": "eur",
        "destination": ACCOUNT,
        "description": "Darkroom payout, Spring Gala",
        "transfer_group": pid,
        "metadata[payout_id]": pid,
    }


def test_stripe_zero_decimal_currency_travels_in_its_own_minor_units(stripe_fake):
    fake, adapter = stripe_fake
    pay(adapter, payout_id(), amount_minor=5000, currency="jpy", destination=ACCOUNT)
    assert fake.transfers[0]["amount"] == 5000
    assert fake.transfers[0]["currency"] == "jpy"


def test_stripe_transfer_that_comes_back_reversed_is_failed(stripe_fake):
    fake, adapter = stripe_fake
    fake.reverse_new = True
    result = pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=ACCOUNT)
    assert result.status == PayoutStatus.FAILED


def test_stripe_retry_after_a_timeout_replays_the_first_transfer(stripe_fake):
    # given: Stripe makes the transfer but the answer never reaches us in time
    fake, adapter = stripe_fake
    pid = payout_id()
    fake.hang_next = ("POST", "/v1/transfers")
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    assert caught.value.retryable is True
    # when: the payout is retried with the same payout id
    first = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    again = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    # then: the retries found the transfer by its group and sent no second one; one transfer made
    assert [r.headers["idempotency-key"] for r in fake.requests_to("POST", "/v1/transfers")] == [pid]
    assert len(fake.requests_to("GET", "/v1/transfers")) == 3
    assert len(fake.transfers) == 1
    assert first == again
    assert first.provider_payout_id == fake.transfers[0]["id"]
    assert fake.balance == 1_000_000 - 2500


def test_stripe_same_payout_id_with_other_parameters_is_refused_not_paid_twice(stripe_fake):
    fake, adapter = stripe_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=9999, currency="EUR", destination=ACCOUNT)
    assert caught.value.retryable is False and "other parameters" in str(caught.value)
    assert len(fake.transfers) == 1


def test_stripe_concurrent_attempts_that_both_miss_the_lookup_share_one_transfer(stripe_fake):
    # given: an earlier attempt's POST reached Stripe after this attempt's lookup found nothing
    fake, adapter = stripe_fake
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    fake.transfers.clear()  # the lookup misses it (a list that is not yet consistent)
    # when
    again = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    # then: Stripe's idempotency key replays the first transfer
    assert again == first and fake.balance == 1_000_000 - 2500
    assert [r.headers["idempotency-key"] for r in fake.requests_to("POST", "/v1/transfers")] == [pid, pid]


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}), True),
        ((503, {"error": {"type": "api_error", "message": "unavailable"}}), True),
        ((429, {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}), True),
        ((409, {"error": {"type": "idempotency_error", "message": "concurrent request with this key"}}), True),
        ((400, {"error": {"type": "invalid_request_error", "message": "No such destination"}}), False),
    ],
)
def test_stripe_failures_are_provider_errors_retryable_as_stripe_says(stripe_fake, outage, retryable):
    fake, adapter = stripe_fake
    fake.outages["POST", "/v1/transfers"] = [outage]
    with pytest.raises(ProviderError) as caught:
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=ACCOUNT)
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("stripe", retryable, outage[0])
    assert fake.transfers == []


def test_stripe_insufficient_balance_is_a_final_refusal(stripe_fake):
    fake, adapter = stripe_fake
    fake.balance = 1000
    with pytest.raises(ProviderError) as caught:
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=ACCOUNT)
    assert (caught.value.retryable, caught.value.http_status) == (False, 400)
    assert fake.transfers == []


def status_of(adapter: Any, pid: str, result: PayoutResult) -> PayoutResult:
    return adapter.payout_status(payout_id=pid, provider_payout_id=result.provider_payout_id)


def test_stripe_payout_status_reads_the_transfer_back_as_paid(stripe_fake):
    # given: a transfer made for a payout
    fake, adapter = stripe_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    # when
    status = status_of(adapter, pid, made)
    # then: the transfer read back by its id, paid
    assert status == made == PayoutResult(fake.transfers[0]["id"], PayoutStatus.PAID, amount_minor=2500, currency="EUR")
    [read] = fake.requests_to("GET", f"/v1/transfers/{made.provider_payout_id}")
    assert read.query == {}


@pytest.mark.parametrize(
    ("reversed_minor", "status"),
    [
        (1000, PayoutStatus.PENDING),  # part of the money came back: an operator settles it
        (2500, PayoutStatus.FAILED),  # all of it is back in the platform balance
    ],
)
def test_stripe_payout_status_of_a_reversed_transfer(stripe_fake, reversed_minor, status):
    # given: a transfer the platform then reversed, in part or in full
    fake, adapter = stripe_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    fake.reverse(made.provider_payout_id, reversed_minor)
    # when / then
    assert status_of(adapter, pid, made) == replace(made, status=status)


def test_stripe_payout_status_of_another_payouts_transfer_is_refused(stripe_fake):
    # given: two payouts' transfers
    fake, adapter = stripe_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    other = pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=ACCOUNT)
    # when: asked about this payout with the other one's transfer id
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, other)
    # then: its metadata names another payout: not an answer for this one, and not worth a retry
    assert caught.value.retryable is False
    assert pid in caught.value.detail
    assert len(fake.requests_to("GET", f"/v1/transfers/{other.provider_payout_id}")) == 1


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}), True),
        ((429, {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}), True),
    ],
)
def test_stripe_payout_status_outage_is_retryable(stripe_fake, outage, retryable):
    fake, adapter = stripe_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=ACCOUNT)
    fake.outages["GET", f"/v1/transfers/{made.provider_payout_id}"] = [outage]
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, made)
    assert (caught.value.retryable, caught.value.http_status) == (retryable, outage[0])


def test_stripe_payout_status_of_an_unknown_transfer_is_a_final_404(stripe_fake):
    fake, adapter = stripe_fake
    with pytest.raises(ProviderError) as caught:
        adapter.payout_status(payout_id=payout_id(), provider_payout_id="tr_1NoSuchTransfer")
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("stripe", False, 404)
    assert [(r.method, r.path) for r in fake.seen] == [("GET", "/v1/transfers/tr_1NoSuchTransfer")]


def test_stripe_unreachable_is_retryable():
    adapter = StripeProvider(
        secret_key=STRIPE_KEY, webhook_secrets=[], transport=ToFake("http://127.0.0.1:9"), max_network_retries=0
    )
    with pytest.raises(ProviderError) as caught:
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=ACCOUNT)
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (ACCOUNT, ACCOUNT),
        (f"  {ACCOUNT}\n", ACCOUNT),
        ("acct_1a2B3c", "acct_1a2B3c"),
    ],
)
def test_stripe_accepts_connected_account_ids(destination, expected):
    adapter = StripeProvider(secret_key=STRIPE_KEY, webhook_secrets=[])
    assert adapter.normalize_payout_destination(destination) == expected


@pytest.mark.parametrize(
    "destination",
    ["", "   ", "acct_", "ACCT_1MTfjCQ9PRzxEwkZ", "cus_1MTfjCQ9PRzxEwkZ", "acct_1MT fjC", "acct_1MT-fjC",
     "photographer@example.com", "acct_" + "a" * 300],
)  # fmt: skip
def test_stripe_refuses_anything_but_a_connected_account_id(stripe_fake, destination):
    fake, adapter = stripe_fake
    with pytest.raises(PayoutDestinationError):
        adapter.normalize_payout_destination(destination)
    # and: payout refuses it before anything is sent
    with pytest.raises(PayoutDestinationError):
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=destination)
    assert fake.seen == []


# --- PayPal: POST /v1/payments/payouts -------------------------------------------------------

PAYPAL_CLIENT = ("client-local", "secret-local")
RECEIVER = "photographer@example.com"
PAYPAL_LINK_BASE = "https://api.sandbox.paypal.com/v1/payments/payouts"  # PayPal links its own host, not ours
DUPLICATE_ISSUE = "Batch with given sender_batch_id already exists"


class FakePayPal(FakeApi):
    """PayPal's OAuth token endpoint and Payouts API. `PayPal-Request-Id` replays the first
    answer. The create answer (201) carries only `batch_header`; a batch read back (GET) carries
    its item with `transaction_status`, and `settle()` plays PayPal processing the batch.

    A sender_batch_id used before is refused with a 400 USER_BUSINESS_ERROR. `duplicate_link`
    says where that answer links the original batch: "details" (`details[].link`, a list, as
    PayPal answers today), "details-object", "top" (the top-level `links`) or None (no link at
    all, as PayPal answered in 2015, PayPal-Ruby-SDK#120). `link_duplicates_to` makes it link
    another batch instead."""

    def reset(self) -> None:
        super().reset()
        self.token = f"A21AAF-{secrets.token_hex(8)}"
        self.batch_status = "PENDING"
        self.duplicate_link: str | None = "details"
        self.duplicate_issue = DUPLICATE_ISSUE
        self.link_duplicates_to: str | None = None
        self.batches: dict[str, dict[str, Any]] = {}
        self._by_request_id: dict[str, Answer] = {}
        self._by_sender_batch_id: dict[str, str] = {}

    def forget_request_ids(self) -> None:
        """PayPal keeps request ids for a while only; sender_batch_ids for 30 days."""
        self._by_request_id.clear()

    def settle(self, batch_id: str, *, batch_status: str, item_status: str) -> None:
        """PayPal processed the batch: its status and its item's transaction_status change."""
        batch = self.batches[batch_id]
        batch["batch_header"]["batch_status"] = batch_status
        batch["items"][0]["transaction_status"] = item_status

    def duplicate(self, batch_id: str) -> Answer:
        link = [{"href": f"{PAYPAL_LINK_BASE}/{batch_id}", "rel": "self", "method": "GET"}]
        if self.duplicate_link is None:
            detail = {"field": "SENDER_BATCH_ID", "issue": self.duplicate_issue}
            return 400, {
                "name": "USER_BUSINESS_ERROR",
                "message": "User business error.",
                "debug_id": secrets.token_hex(6),
                "information_link": "https://developer.paypal.com/webapps/developer/docs/api/#USER_BUSINESS_ERROR",
                "details": [detail],
            }
        detail = {"field": "SENDER_BATCH_ID", "location": "body", "issue": self.duplicate_issue}
        if self.duplicate_link == "details":
            detail["link"] = link
        elif self.duplicate_link == "details-object":
            detail["link"] = link[0]
        return 400, {
            "name": "USER_BUSINESS_ERROR",
            "message": "User business error.",
            "debug_id": secrets.token_hex(6),
            "information_link": "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors",
            "details": [detail],
            "links": link if self.duplicate_link == "top" else [],
        }

    def answer(self, seen: Seen) -> Answer:
        if seen.path == "/v1/oauth2/token":
            basic = base64.b64encode(":".join(PAYPAL_CLIENT).encode()).decode()
            assert seen.headers["authorization"] == f"Basic {basic}"
            assert seen.form() == {"grant_type": "client_credentials"}
            return 200, {"access_token": self.token, "token_type": "Bearer", "expires_in": 32400}
        if seen.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
        if seen.method == "GET" and (match := re.fullmatch(r"/v1/payments/payouts/([A-Z0-9]+)", seen.path)):
            batch = self.batches.get(match.group(1))
            if batch is None:
                return 404, {"name": "RESOURCE_NOT_FOUND", "message": "The requested resource was not found"}
            return 200, batch
        assert (seen.method, seen.path) == ("POST", "/v1/payments/payouts")
        request_id = seen.headers.get("paypal-request-id")
        if request_id in self._by_request_id:
            return self._by_request_id[request_id]
        body = seen.json()
        header, [item] = body["sender_batch_header"], body["items"]
        decimals = r"" if item["amount"]["currency"] == "JPY" else r"\.[0-9]{2}"
        assert re.fullmatch(r"[0-9]+" + decimals, item["amount"]["value"]), "amount.value is a major-unit string"
        assert item["recipient_type"] == "EMAIL"
        existing = self._by_sender_batch_id.get(header["sender_batch_id"])
        if existing is not None:
            return self.duplicate(self.link_duplicates_to or existing)
        batch_id = secrets.token_hex(7).upper()[:13]
        self._by_sender_batch_id[header["sender_batch_id"]] = batch_id
        links = [{"href": f"{PAYPAL_LINK_BASE}/{batch_id}", "rel": "self", "method": "GET"}]
        self.batches[batch_id] = {
            "batch_header": {
                "payout_batch_id": batch_id,
                "batch_status": self.batch_status,
                "sender_batch_header": header,
                "amount": item["amount"],
                "fees": {"currency": item["amount"]["currency"], "value": "0.00"},
            },
            "items": [
                {
                    "payout_item_id": secrets.token_hex(7).upper(),
                    "payout_batch_id": batch_id,
                    "transaction_status": "PENDING",
                    "payout_item": item,
                }
            ],
            "links": links,
        }
        created_header = {"payout_batch_id": batch_id, "batch_status": self.batch_status, "sender_batch_header": header}
        created = {"batch_header": created_header, "links": links}
        answer: Answer = (201, created)
        if request_id:
            self._by_request_id[request_id] = answer
        return answer


@pytest.fixture(scope="module")
def paypal_server() -> Iterator[tuple[FakePayPal, str]]:
    fake = FakePayPal()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def paypal_fake(paypal_server) -> Iterator[tuple[FakePayPal, PayPalProvider]]:
    fake, base = paypal_server
    fake.reset()
    client_id, client_secret = PAYPAL_CLIENT
    adapter = PayPalProvider(
        client_id=client_id,
        client_secret=client_secret,
        webhook_id="WH-unused",
        api_base=base,
        transport=ToLoopback(fake),
        timeout=TIMEOUT,
    )
    yield fake, adapter
    assert fake.violations == []


def paypal_payouts_calls(fake: FakePayPal) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.seen if r.path.startswith("/v1/payments/payouts")]


def test_paypal_payout_creates_a_one_item_batch_keyed_by_the_payout_id(paypal_fake):
    fake, adapter = paypal_fake
    pid = payout_id()
    # when
    result = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: the batch is accepted, its final state comes later
    [batch_id] = fake.batches
    assert result == PayoutResult(batch_id, PayoutStatus.PENDING, amount_minor=2500, currency="EUR")
    # and: a token, then one POST with the payout id as request id, batch id and item id
    [request] = fake.requests_to("POST", "/v1/payments/payouts")
    assert request.headers["paypal-request-id"] == pid
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["sender_batch_header"]["sender_batch_id"] == pid
    assert body["sender_batch_header"]["email_subject"]
    assert body["items"] == [
        {
            "recipient_type": "EMAIL",
            "amount": {"value": "25.00", "currency": "EUR"},
            "receiver": RECEIVER,
            "sender_item_id": pid,
            "note": "Darkroom payout, Spring Gala",
        }
    ]


def test_paypal_zero_decimal_currency_is_sent_without_decimals(paypal_fake):
    fake, adapter = paypal_fake
    pay(adapter, payout_id(), amount_minor=500, currency="JPY", destination=RECEIVER)
    [request] = fake.requests_to("POST", "/v1/payments/payouts")
    assert request.json()["items"][0]["amount"] == {"value": "500", "currency": "JPY"}


@pytest.mark.parametrize(
    ("batch_status", "status"),
    [
        ("SUCCESS", PayoutStatus.PENDING),  # says nothing about the item: it may be UNCLAIMED
        ("DENIED", PayoutStatus.FAILED),  # PayPal: denied, so not processed
        ("CANCELED", PayoutStatus.PENDING),  # PayPal does not say that no money moved
        ("PENDING", PayoutStatus.PENDING),
        ("PROCESSING", PayoutStatus.PENDING),
        ("NEW", PayoutStatus.PENDING),
    ],
)
def test_paypal_create_answer_without_items_is_never_paid(paypal_fake, batch_status, status):
    # given: PayPal answers the create with a batch_header only, in this batch status
    fake, adapter = paypal_fake
    fake.batch_status = batch_status
    # when
    result = pay(adapter, payout_id(), amount_minor=2500, currency="USD", destination=RECEIVER)
    # then: the batch status alone decides, and only DENIED is final
    assert result.status == status
    assert paypal_payouts_calls(fake) == [("POST", "/v1/payments/payouts")]


def test_paypal_successful_batch_with_an_unclaimed_item_is_pending_not_paid(paypal_fake):
    # given: a batch PayPal completed, whose receiver has no PayPal account yet
    fake, adapter = paypal_fake
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.settle(first.provider_payout_id, batch_status="SUCCESS", item_status="UNCLAIMED")
    fake.forget_request_ids()
    # when: the payout is sent again and the batch read back
    again = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: still pending: PayPal returns unclaimed money after 30 days
    assert again == replace(first, status=PayoutStatus.PENDING)
    assert paypal_payouts_calls(fake)[-1] == ("GET", f"/v1/payments/payouts/{first.provider_payout_id}")


@pytest.mark.parametrize(
    ("batch_status", "item_status", "status"),
    [
        ("SUCCESS", "SUCCESS", PayoutStatus.PAID),
        ("SUCCESS", "RETURNED", PayoutStatus.FAILED),
        ("SUCCESS", "REFUNDED", PayoutStatus.FAILED),
        ("DENIED", "FAILED", PayoutStatus.FAILED),
        ("SUCCESS", "UNCLAIMED", PayoutStatus.PENDING),
        ("SUCCESS", "ONHOLD", PayoutStatus.PENDING),
        ("SUCCESS", "BLOCKED", PayoutStatus.PENDING),  # PayPal does not say where the money is
        ("SUCCESS", "REVERSED", PayoutStatus.PENDING),  # nor here
        ("PROCESSING", "PENDING", PayoutStatus.PENDING),
        ("SUCCESS", "SOMETHING_NEW", PayoutStatus.PENDING),
    ],
)
def test_paypal_item_status_of_the_batch_read_back_is_the_payout_status(paypal_fake, batch_status, item_status, status):
    # given: a batch PayPal processed, read back after a duplicate refusal
    fake, adapter = paypal_fake
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.settle(first.provider_payout_id, batch_status=batch_status, item_status=item_status)
    fake.forget_request_ids()
    # when
    again = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: the item decides
    assert again == replace(first, status=status)


def test_paypal_retry_after_a_timeout_gets_the_same_batch(paypal_fake):
    # given: PayPal creates the batch but the answer never reaches us in time
    fake, adapter = paypal_fake
    pid = payout_id()
    fake.hang_next = ("POST", "/v1/payments/payouts")
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=2500, currency="USD", destination=RECEIVER)
    assert caught.value.retryable is True
    # when: retried twice with the same payout id
    first = pay(adapter, pid, amount_minor=2500, currency="USD", destination=RECEIVER)
    again = pay(adapter, pid, amount_minor=2500, currency="USD", destination=RECEIVER)
    # then: one batch for this payout id, and every attempt carried the same request id
    [batch_id] = fake.batches
    assert first == again
    assert first.provider_payout_id == batch_id
    attempts = fake.requests_to("POST", "/v1/payments/payouts")
    assert [r.headers["paypal-request-id"] for r in attempts] == [pid] * 3


@pytest.mark.parametrize("duplicate_link", ["details", "details-object", "top"])
def test_paypal_reused_sender_batch_id_returns_the_original_batch(paypal_fake, duplicate_link):
    # given: a paid-out batch, and PayPal no longer remembers the request id
    fake, adapter = paypal_fake
    fake.duplicate_link = duplicate_link
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.settle(first.provider_payout_id, batch_status="SUCCESS", item_status="SUCCESS")
    fake.forget_request_ids()
    # when: the payout is sent again
    again = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: PayPal refused the duplicate, the adapter read the linked batch (from our API base,
    # not the host in the link): still one batch, now paid
    assert again == replace(first, status=PayoutStatus.PAID)
    assert len(fake.batches) == 1
    assert paypal_payouts_calls(fake) == [
        ("POST", "/v1/payments/payouts"),
        ("POST", "/v1/payments/payouts"),
        ("GET", f"/v1/payments/payouts/{first.provider_payout_id}"),
    ]


@pytest.mark.parametrize("issue", [DUPLICATE_ISSUE, "Duplicate batch request"])
def test_paypal_duplicate_without_a_link_is_retryable_never_a_refusal(paypal_fake, issue):
    # given: a batch made, and PayPal's duplicate answer links no batch
    fake, adapter = paypal_fake
    fake.duplicate_link, fake.duplicate_issue = None, issue
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.forget_request_ids()
    # when
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: the outcome is unknown, so the caller may retry but must not credit the money back
    assert (caught.value.retryable, caught.value.http_status) == (True, 400)
    assert "duplicate" in caught.value.detail
    assert len(fake.batches) == 1
    assert [method for method, _ in paypal_payouts_calls(fake)] == ["POST", "POST"]


def test_paypal_duplicate_linking_another_payouts_batch_is_retryable_never_a_refusal(paypal_fake):
    # given: two payouts' batches, and a duplicate answer for the first that links the second's
    fake, adapter = paypal_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    other = pay(adapter, payout_id(), amount_minor=9900, currency="EUR", destination=RECEIVER)
    fake.forget_request_ids()
    fake.link_duplicates_to = other.provider_payout_id
    # when
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # then: the other batch is not taken for this payout's, and this one's is unknown
    assert caught.value.retryable is True
    assert paypal_payouts_calls(fake)[-1] == ("GET", f"/v1/payments/payouts/{other.provider_payout_id}")


def test_paypal_duplicate_whose_batch_cannot_be_read_is_retryable_never_a_refusal(paypal_fake):
    fake, adapter = paypal_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.forget_request_ids()
    [batch_id] = fake.batches
    fake.outages["GET", f"/v1/payments/payouts/{batch_id}"] = [(503, {"name": "SERVICE_UNAVAILABLE"})]
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"name": "INTERNAL_SERVER_ERROR", "message": "An internal server error occurred."}), True),
        ((503, {"name": "SERVICE_UNAVAILABLE"}), True),
        ((429, {"name": "RATE_LIMIT_REACHED", "message": "Too many requests."}), True),
        ((422, {"name": "INSUFFICIENT_FUNDS", "message": "Sender does not have sufficient funds."}), False),
        ((400, {"name": "VALIDATION_ERROR", "message": "Invalid request - see details",
                "details": [{"field": "items[0].receiver", "issue": "Receiver is invalid"}]}), False),
    ],
)  # fmt: skip
def test_paypal_failures_are_provider_errors_retryable_as_paypal_says(paypal_fake, outage, retryable):
    fake, adapter = paypal_fake
    fake.outages["POST", "/v1/payments/payouts"] = [outage]
    with pytest.raises(ProviderError) as caught:
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=RECEIVER)
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("paypal", retryable, outage[0])
    assert fake.batches == {}


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (RECEIVER, RECEIVER),
        ("  Ana.Photo@Example.COM ", "Ana.Photo@example.com"),
        ("first+payouts@studio.example.co.uk", "first+payouts@studio.example.co.uk"),
    ],
)
def test_paypal_accepts_receiver_email_addresses_with_the_domain_lower_cased(destination, expected):
    adapter = PayPalProvider(client_id="c", client_secret="s", webhook_id="w")
    assert adapter.normalize_payout_destination(destination) == expected


@pytest.mark.parametrize(
    "destination",
    ["", "photographer", "photographer@", "@example.com", "a b@example.com", "photographer@example",
     ACCOUNT, "x" * 190 + "@example.com"],
)  # fmt: skip
def test_paypal_refuses_anything_but_an_email_address(paypal_fake, destination):
    fake, adapter = paypal_fake
    with pytest.raises(PayoutDestinationError):
        adapter.normalize_payout_destination(destination)
    with pytest.raises(PayoutDestinationError):
        pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=destination)
    assert fake.seen == []


def test_paypal_payout_status_follows_the_item_from_pending_to_paid(paypal_fake):
    # given: a payout PayPal accepted (submitted: the create answer is never PAID)
    fake, adapter = paypal_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    # when: read back before PayPal processed it, then after
    before = status_of(adapter, pid, made)
    fake.settle(made.provider_payout_id, batch_status="SUCCESS", item_status="SUCCESS")
    after = status_of(adapter, pid, made)
    # then: pending, then paid, each from the batch read back on our API base
    assert before == PayoutResult(made.provider_payout_id, PayoutStatus.PENDING, amount_minor=2500, currency="EUR")
    assert after == replace(before, status=PayoutStatus.PAID)
    assert paypal_payouts_calls(fake)[1:] == [("GET", f"/v1/payments/payouts/{made.provider_payout_id}")] * 2


@pytest.mark.parametrize(
    ("item_status", "status"),
    [
        ("RETURNED", PayoutStatus.FAILED),  # unclaimed for 30 days: the money is back with us
        ("REFUNDED", PayoutStatus.FAILED),
        ("FAILED", PayoutStatus.FAILED),
        ("UNCLAIMED", PayoutStatus.PENDING),
        ("ONHOLD", PayoutStatus.PENDING),
        ("BLOCKED", PayoutStatus.PENDING),
        ("REVERSED", PayoutStatus.PENDING),
    ],
)
def test_paypal_payout_status_maps_the_item_like_payout_does(paypal_fake, item_status, status):
    fake, adapter = paypal_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=1999, currency="USD", destination=RECEIVER)
    fake.settle(made.provider_payout_id, batch_status="SUCCESS", item_status=item_status)
    assert status_of(adapter, pid, made) == replace(made, status=status)


def test_paypal_payout_status_of_another_payouts_batch_is_refused(paypal_fake):
    # given: two payouts' batches, the other one paid
    fake, adapter = paypal_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    other = pay(adapter, payout_id(), amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.settle(other.provider_payout_id, batch_status="SUCCESS", item_status="RETURNED")
    # when: asked about this payout with the other one's batch id
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, other)
    # then: its sender_batch_id is not ours: refused, never read as this payout's failure
    assert caught.value.retryable is False
    assert pid in caught.value.detail


def test_paypal_payout_status_of_a_batch_without_our_item_is_refused(paypal_fake):
    # given: our batch, whose only item carries another sender_item_id
    fake, adapter = paypal_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.settle(made.provider_payout_id, batch_status="SUCCESS", item_status="RETURNED")
    fake.batches[made.provider_payout_id]["items"][0]["payout_item"]["sender_item_id"] = "someone-else"
    # when / then
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, made)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"name": "INTERNAL_SERVER_ERROR", "message": "An internal server error occurred."}), True),
        ((503, {"name": "SERVICE_UNAVAILABLE"}), True),
        ((429, {"name": "RATE_LIMIT_REACHED", "message": "Too many requests."}), True),
    ],
)
def test_paypal_payout_status_outage_is_retryable(paypal_fake, outage, retryable):
    fake, adapter = paypal_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=2500, currency="EUR", destination=RECEIVER)
    fake.outages["GET", f"/v1/payments/payouts/{made.provider_payout_id}"] = [outage]
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, made)
    assert (caught.value.retryable, caught.value.http_status) == (retryable, outage[0])


def test_paypal_payout_status_of_an_unknown_batch_is_a_final_404(paypal_fake):
    fake, adapter = paypal_fake
    with pytest.raises(ProviderError) as caught:
        adapter.payout_status(payout_id=payout_id(), provider_payout_id="NOSUCHBATCH42")
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("paypal", False, 404)
    assert paypal_payouts_calls(fake) == [("GET", "/v1/payments/payouts/NOSUCHBATCH42")]


# --- Flutterwave: POST /v3/transfers ---------------------------------------------------------

FLW_KEY = "FLWSECK_TEST-" + "b" * 32 + "-X"
BANK_ACCOUNT = "044:0690000031"


class FakeFlutterwave(FakeApi):
    """Flutterwave v3 transfers: a reference is unique (a reused one is refused, whatever the
    idempotency header), transfers can be listed by reference, and the balance must cover one."""

    def reset(self) -> None:
        super().reset()
        self.balance = Decimal(1_000_000)
        self.new_status = "NEW"
        self.transfers: list[dict[str, Any]] = []

    def settle(self, transfer_id: int | str, *, status: str, complete_message: str) -> None:
        """Flutterwave processed the transfer: its status and complete_message change."""
        transfer = next(t for t in self.transfers if str(t["id"]) == str(transfer_id))
        transfer["status"], transfer["complete_message"] = status, complete_message

    def answer(self, seen: Seen) -> Answer:
        if seen.headers.get("authorization") != f"Bearer {FLW_KEY}":
            return 401, {"status": "error", "message": "Invalid authorization key", "data": None}
        if seen.method == "GET" and (match := re.fullmatch(r"/v3/transfers/([^/]+)", seen.path)):
            found = [t for t in self.transfers if str(t["id"]) == match.group(1)]
            if not found:
                return 404, {"status": "error", "message": "Transfer not found", "data": None}
            return 200, {"status": "success", "message": "Transfer fetched", "data": found[0]}
        if seen.method == "GET":
            assert seen.path == "/v3/transfers"
            [reference] = seen.query["reference"]
            found = [t for t in self.transfers if t["reference"] == reference]
            return 200, {
                "status": "success",
                "message": "Transfers fetched",
                "meta": {"page_info": {"total": len(found), "current_page": 1, "total_pages": 1}},
                "data": found,
            }
        assert (seen.method, seen.path) == ("POST", "/v3/transfers")
        body = seen.json()
        amount = body["amount"]
        assert isinstance(amount, int | Decimal) and not isinstance(amount, bool), "amount is a JSON number"
        assert body["account_bank"].isdigit() and body["account_number"].isdigit()
        assert body["debit_currency"] == body["currency"]
        if any(t["reference"] == body["reference"] for t in self.transfers):
            return 400, {"status": "error", "message": "Duplicate reference", "data": None}
        if amount > self.balance:
            return 400, {"status": "error", "message": "Insufficient funds in customer balance", "data": None}
        self.balance -= amount
        transfer = {
            "id": 26251 + len(self.transfers),
            "account_number": body["account_number"],
            "bank_code": body["account_bank"],
            "full_name": "Ada Photographer",
            "created_at": "2025-06-15T14:02:11.000Z",
            "currency": body["currency"],
            "debit_currency": body["debit_currency"],
            "amount": float(amount) if isinstance(amount, Decimal) else amount,
            "fee": 10.75,
            "status": self.new_status,
            "reference": body["reference"],
            "meta": None,
            "narration": body["narration"],
            "complete_message": "",
            "requires_approval": 0,
            "is_approved": 1,
            "bank_name": "ACCESS BANK NIGERIA",
        }
        self.transfers.append(transfer)
        return 200, {"status": "success", "message": "Transfer Queued Successfully", "data": transfer}


@pytest.fixture(scope="module")
def flutterwave_server() -> Iterator[tuple[FakeFlutterwave, str]]:
    fake = FakeFlutterwave()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def flutterwave_fake(flutterwave_server) -> Iterator[tuple[FakeFlutterwave, FlutterwaveProvider]]:
    fake, base = flutterwave_server
    fake.reset()
    adapter = FlutterwaveProvider(
        secret_key=FLW_KEY, secret_hash="", api_base=f"{base}/v3", transport=ToLoopback(fake), timeout=TIMEOUT
    )
    yield fake, adapter
    assert fake.violations == []


def test_flutterwave_payout_creates_a_bank_transfer_with_the_payout_id_as_reference(flutterwave_fake):
    fake, adapter = flutterwave_fake
    pid = payout_id()
    # when
    result = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # then: queued, the final state comes later
    [transfer] = fake.transfers
    assert result == PayoutResult(str(transfer["id"]), PayoutStatus.PENDING, amount_minor=1550, currency="NGN")
    # and: one POST, amount as a JSON number in major units, reference and idempotency key = payout id
    [request] = fake.requests_to("POST", "/v3/transfers")
    assert request.headers["x-idempotency-key"] == pid
    assert request.json() == {
        "account_bank": "044",
        "account_number": "0690000031",
        "amount": Decimal("15.5"),
        "currency": "NGN",
        "debit_currency": "NGN",
        "reference": pid,
        "narration": "Darkroom payout, Spring Gala",
    }
    assert b'"amount":15.5,' in request.body


def test_flutterwave_whole_and_zero_decimal_amounts_are_integers(flutterwave_fake):
    fake, adapter = flutterwave_fake
    pay(adapter, payout_id(), amount_minor=5000, currency="UGX", destination=BANK_ACCOUNT)
    pay(adapter, payout_id(), amount_minor=120000, currency="NGN", destination=BANK_ACCOUNT)
    assert [r.json()["amount"] for r in fake.requests_to("POST", "/v3/transfers")] == [5000, 1200]


@pytest.mark.parametrize(
    ("transfer_status", "status"),
    [
        ("NEW", PayoutStatus.PENDING),
        ("PENDING", PayoutStatus.PENDING),
        ("SUCCESSFUL", PayoutStatus.PAID),
        ("FAILED", PayoutStatus.FAILED),
    ],
)
def test_flutterwave_transfer_status_maps_to_the_payout_status(flutterwave_fake, transfer_status, status):
    fake, adapter = flutterwave_fake
    fake.new_status = transfer_status
    assert pay(adapter, payout_id(), amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT).status == status


def test_flutterwave_repeated_payout_id_is_refused_as_a_duplicate_and_the_transfer_looked_up(flutterwave_fake):
    # given: a transfer made for a payout id
    fake, adapter = flutterwave_fake
    pid = payout_id()
    first = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # when: the same payout is sent again
    again = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # then: Flutterwave refused the reference, the adapter found the first transfer by it
    assert again == first
    assert len(fake.transfers) == 1
    posts = fake.requests_to("POST", "/v3/transfers")
    assert [(r.headers["x-idempotency-key"], r.json()["reference"]) for r in posts] == [(pid, pid), (pid, pid)]
    [lookup] = fake.requests_to("GET", "/v3/transfers")
    assert lookup.query == {"reference": [pid]}


def test_flutterwave_retry_after_a_timeout_pays_once(flutterwave_fake):
    # given: Flutterwave queues the transfer but the answer never reaches us in time
    fake, adapter = flutterwave_fake
    pid = payout_id()
    fake.hang_next = ("POST", "/v3/transfers")
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    assert caught.value.retryable is True
    # when: retried
    result = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # then: one transfer, the one the timed-out attempt made
    [transfer] = fake.transfers
    assert result.provider_payout_id == str(transfer["id"])
    assert fake.balance == Decimal(1_000_000) - Decimal("15.5")


def test_flutterwave_refused_retry_whose_lookup_fails_is_retryable_never_a_refusal(flutterwave_fake):
    fake, adapter = flutterwave_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # given: the retry is refused as a duplicate, and the lookup then fails
    fake.outages["GET", "/v3/transfers"] = [(502, {"status": "error", "message": "Bad gateway", "data": None})]
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    assert caught.value.retryable is True
    assert len(fake.transfers) == 1


def test_flutterwave_refusal_with_no_transfer_behind_it_is_final(flutterwave_fake):
    # given: a balance that does not cover the payout
    fake, adapter = flutterwave_fake
    fake.balance = Decimal(10)
    pid = payout_id()
    # when
    with pytest.raises(ProviderError) as caught:
        pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # then: a final refusal, reported only after the lookup found no transfer with this reference
    assert (caught.value.retryable, caught.value.http_status) == (False, 400)
    assert "Insufficient funds" in caught.value.detail
    assert [lookup.query for lookup in fake.requests_to("GET", "/v3/transfers")] == [{"reference": [pid]}]
    assert fake.transfers == []


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"status": "error", "message": "Internal server error", "data": None}), True),
        ((503, {"status": "error", "message": "Service unavailable", "data": None}), True),
        ((429, {"status": "error", "message": "Too many requests", "data": None}), True),
    ],
)
def test_flutterwave_outages_are_retryable(flutterwave_fake, outage, retryable):
    fake, adapter = flutterwave_fake
    fake.outages["POST", "/v3/transfers"] = [outage]
    with pytest.raises(ProviderError) as caught:
        pay(adapter, payout_id(), amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == (
        "flutterwave",
        retryable,
        outage[0],
    )
    assert fake.transfers == []


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (BANK_ACCOUNT, BANK_ACCOUNT),
        (" 044 : 0690000031 ", BANK_ACCOUNT),
        ("058:123456", "058:123456"),
        ("123456:12345678901234567890", "123456:12345678901234567890"),
    ],
)
def test_flutterwave_accepts_bank_code_and_account_number(destination, expected):
    adapter = FlutterwaveProvider(secret_key=FLW_KEY, secret_hash="")
    assert adapter.normalize_payout_destination(destination) == expected


@pytest.mark.parametrize(
    "destination",
    ["", "0690000031", "044:", ":0690000031", "44:0690000031", "1234567:0690000031", "044:12345",
     "044:123456789012345678901", "044:06900O0031", "ABC:0690000031", "044-0690000031", "044:0690000031:1",
     RECEIVER],
)  # fmt: skip
def test_flutterwave_refuses_anything_but_bank_code_colon_account_number(flutterwave_fake, destination):
    fake, adapter = flutterwave_fake
    with pytest.raises(PayoutDestinationError):
        adapter.normalize_payout_destination(destination)
    with pytest.raises(PayoutDestinationError):
        pay(adapter, payout_id(), amount_minor=1550, currency="NGN", destination=destination)
    assert fake.seen == []


def test_flutterwave_payout_status_follows_the_transfer_from_new_to_successful(flutterwave_fake):
    # given: a queued transfer (submitted)
    fake, adapter = flutterwave_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    # when: read back while queued, then after Flutterwave paid it out
    before = status_of(adapter, pid, made)
    fake.settle(made.provider_payout_id, status="SUCCESSFUL", complete_message="Transaction was successful")
    after = status_of(adapter, pid, made)
    # then
    assert before == PayoutResult(made.provider_payout_id, PayoutStatus.PENDING, amount_minor=1550, currency="NGN")
    assert after == replace(before, status=PayoutStatus.PAID)
    assert len(fake.requests_to("GET", f"/v3/transfers/{made.provider_payout_id}")) == 2


def test_flutterwave_payout_status_of_a_failed_transfer_stays_pending(flutterwave_fake):
    # given: a queued transfer that Flutterwave then reports FAILED
    fake, adapter = flutterwave_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    fake.settle(made.provider_payout_id, status="FAILED", complete_message="DISBURSE FAILED: Account not found")
    # when
    status = status_of(adapter, pid, made)
    # then: not FAILED (which credits the money back): Flutterwave does not document that a failed
    # transfer's money is back in the balance, so an operator settles it
    assert status.status == PayoutStatus.PENDING


def test_flutterwave_payout_status_of_another_payouts_transfer_is_refused(flutterwave_fake):
    fake, adapter = flutterwave_fake
    pid = payout_id()
    pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    other = pay(adapter, payout_id(), amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    fake.settle(other.provider_payout_id, status="SUCCESSFUL", complete_message="Transaction was successful")
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, other)
    assert caught.value.retryable is False
    assert pid in caught.value.detail


@pytest.mark.parametrize(
    ("outage", "retryable"),
    [
        ((500, {"status": "error", "message": "Internal server error", "data": None}), True),
        ((503, {"status": "error", "message": "Service unavailable", "data": None}), True),
        ((429, {"status": "error", "message": "Too many requests", "data": None}), True),
    ],
)
def test_flutterwave_payout_status_outage_is_retryable(flutterwave_fake, outage, retryable):
    fake, adapter = flutterwave_fake
    pid = payout_id()
    made = pay(adapter, pid, amount_minor=1550, currency="NGN", destination=BANK_ACCOUNT)
    fake.outages["GET", f"/v3/transfers/{made.provider_payout_id}"] = [outage]
    with pytest.raises(ProviderError) as caught:
        status_of(adapter, pid, made)
    assert (caught.value.retryable, caught.value.http_status) == (retryable, outage[0])


def test_flutterwave_payout_status_of_an_unknown_transfer_is_a_final_404(flutterwave_fake):
    fake, adapter = flutterwave_fake
    with pytest.raises(ProviderError) as caught:
        adapter.payout_status(payout_id=payout_id(), provider_payout_id="99999999")
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("flutterwave", False, 404)
    assert [(r.method, r.path) for r in fake.seen] == [("GET", "/v3/transfers/99999999")]


# --- sandbox: recorded in Redis --------------------------------------------------------------


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(webhook_secrets=["unused"], public_base_url="http://127.0.0.1:8000", cache=cache)


def test_sandbox_payout_is_paid_with_a_stable_id(sandbox):
    pid = payout_id()
    result = pay(sandbox, pid, amount_minor=2500, currency="eur", destination="studio-ana")
    assert result == PayoutResult(f"sbx_po_{uuid.UUID(pid).hex}", PayoutStatus.PAID, amount_minor=2500, currency="EUR")


def test_sandbox_replay_of_a_payout_id_returns_the_recorded_payout_from_redis(sandbox):
    # given: a payout made by one adapter instance
    pid = payout_id()
    first = pay(sandbox, pid, amount_minor=2500, currency="EUR", destination="studio-ana")
    # when: another instance (another worker process shares only Redis) sends it again
    other = SandboxProvider(webhook_secrets=["unused"], public_base_url="http://127.0.0.1:8000", cache=cache)
    again = pay(other, pid, amount_minor=2500, currency="EUR", destination=" studio-ana ")
    # then: the same payout; a different payout id is a different payout
    assert again == first
    assert pay(sandbox, payout_id(), amount_minor=2500, currency="EUR", destination="studio-ana") != first


@pytest.mark.parametrize(
    "change",
    [{"amount_minor": 2501}, {"currency": "USD"}, {"destination": "studio-bob"}],
)
def test_sandbox_conflicting_retry_of_a_payout_id_is_refused(sandbox, change):
    pid = payout_id()
    original = {"amount_minor": 2500, "currency": "EUR", "destination": "studio-ana"}
    first = pay(sandbox, pid, **original)
    with pytest.raises(ProviderError) as caught:
        pay(sandbox, pid, **(original | change))
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("sandbox", False, 409)
    # and: the recorded payout is unchanged
    assert pay(sandbox, pid, **original) == first


def test_sandbox_concurrent_payouts_of_one_id_record_one_outcome(sandbox):
    # given: two workers sending the same payout id with different amounts at once
    pid = payout_id()
    start = threading.Barrier(2)
    outcomes: list[PayoutResult | ProviderError] = []

    def send(amount: int) -> None:
        start.wait()
        try:
            outcomes.append(pay(sandbox, pid, amount_minor=amount, currency="EUR", destination="studio-ana"))
        except ProviderError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=send, args=(amount,)) for amount in (2500, 2600)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: exactly one was paid, the other refused as a conflict
    [paid] = [o for o in outcomes if isinstance(o, PayoutResult)]
    [refused] = [o for o in outcomes if isinstance(o, ProviderError)]
    assert refused.http_status == 409
    assert pay(sandbox, pid, amount_minor=paid.amount_minor, currency="EUR", destination="studio-ana") == paid


@pytest.mark.parametrize(
    ("destination", "expected"),
    [("studio-ana", "studio-ana"), ("  Ana's studio, Lagos ", "Ana's studio, Lagos"), ("x" * 200, "x" * 200)],
)
def test_sandbox_accepts_printable_text(sandbox, destination, expected):
    assert sandbox.normalize_payout_destination(destination) == expected


@pytest.mark.parametrize("destination", ["", "   ", "x" * 201, "line\nbreak", "nul\x00", "tab\there"])
def test_sandbox_refuses_empty_long_or_unprintable_destinations(sandbox, destination):
    with pytest.raises(PayoutDestinationError):
        sandbox.normalize_payout_destination(destination)
    with pytest.raises(PayoutDestinationError):
        pay(sandbox, payout_id(), amount_minor=2500, currency="EUR", destination=destination)


def test_sandbox_payout_status_is_the_recorded_payout(sandbox):
    # given: a payout made by one adapter instance
    pid = payout_id()
    made = pay(sandbox, pid, amount_minor=2500, currency="EUR", destination="studio-ana")
    # when: another instance (another worker) asks about it
    other = SandboxProvider(webhook_secrets=["unused"], public_base_url="http://127.0.0.1:8000", cache=cache)
    # then: paid, as recorded in Redis
    assert status_of(other, pid, made) == made == replace(made, status=PayoutStatus.PAID)


def test_sandbox_payout_status_of_an_unknown_payout_is_a_final_404(sandbox):
    with pytest.raises(ProviderError) as caught:
        sandbox.payout_status(payout_id=payout_id(), provider_payout_id=f"sbx_po_{uuid.uuid4().hex}")
    assert (caught.value.provider, caught.value.retryable, caught.value.http_status) == ("sandbox", False, 404)


def test_sandbox_payout_status_with_another_payouts_id_is_refused(sandbox):
    pid = payout_id()
    pay(sandbox, pid, amount_minor=2500, currency="EUR", destination="studio-ana")
    other = pay(sandbox, payout_id(), amount_minor=2500, currency="EUR", destination="studio-ana")
    with pytest.raises(ProviderError) as caught:
        status_of(sandbox, pid, other)
    assert (caught.value.retryable, caught.value.http_status) == (False, 409)


@pytest.mark.parametrize("provider_payout_id", ["", "   "])
def test_payout_status_refuses_an_empty_provider_id_before_asking(
    stripe_fake, paypal_fake, flutterwave_fake, sandbox, provider_payout_id
):
    # an empty id would address the provider's list of payouts instead of one payout
    for fake, adapter in (stripe_fake, paypal_fake, flutterwave_fake, (None, sandbox)):
        with pytest.raises(ValueError):
            adapter.payout_status(payout_id=payout_id(), provider_payout_id=provider_payout_id)
        assert fake is None or fake.seen == []
