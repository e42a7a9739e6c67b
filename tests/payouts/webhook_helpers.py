"""Helpers for the payout webhook tests: payouts of each provider in a chosen state, and the
providers' payout events in their documented shapes, signed with their real schemes (the
secrets and the PayPal key are local: see tests/payments/signing_helpers.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.test import Client

from apps.ledger.projection import projection_rebuild
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PayoutResult, ProviderError
from apps.payouts import services
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run, payout_destination_set, payout_submit, wallet_exact_balance
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.commerce.helpers import drain_outbox
from tests.payouts.helpers import Wallet, make_wallet

DESTINATIONS = {
    "stripe": "acct_1MTfjCQ9PRzxEwkZ",
    "flutterwave": "044:0690000031",
    "paypal": "photographer@example.test",
    "sandbox": "studio-bank-1",
}
AMOUNT = 2500  # EUR minor units: every payout here is 25.00 EUR


class StandInProvider:
    """Answers the payout call (and status checks) with the next of `outcomes`; `during_call`
    runs inside the call, before the answer: what the provider does meanwhile (a webhook)."""

    def __init__(self, *outcomes: PayoutResult | ProviderError, during_call: Any = None) -> None:
        self.outcomes = list(outcomes)
        self.during_call = during_call
        self.calls: list[dict[str, Any]] = []

    def payout(self, **kwargs: Any) -> PayoutResult:
        self.calls.append(kwargs)
        if self.during_call is not None:
            self.during_call(kwargs)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def payout_status(self, **kwargs: Any) -> PayoutResult:
        return self.payout(**kwargs)


def provider_payout(studio: Organization, provider: str) -> tuple[Payout, Wallet]:
    """A pending payout of 25.00 EUR to a photographer paid through `provider` (debited, unsent)."""
    wallet = make_wallet(studio, credited=AMOUNT, destination=None)
    with tenant_context(studio.pk):
        payout_destination_set(tenant=studio, owner=wallet.owner, provider=provider, destination=DESTINATIONS[provider])
    projection_rebuild()
    payout_batch_run(trigger="test")
    return payout_of(wallet), wallet


def submitted(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, provider: str, answer: PayoutResult, **stand_in: Any
) -> tuple[Payout, Wallet, StandInProvider]:
    """A payout of `provider` sent, the provider's `answer` recorded (paid, submitted, ...)."""
    payout, wallet = provider_payout(studio, provider)
    stand = StandInProvider(answer, **stand_in)
    monkeypatch.setattr(services, "get_provider", lambda name: stand)
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
    return payout_of(wallet), wallet, stand


def payout_of(wallet: Wallet) -> Payout:
    with system_context("test: payouts"):
        [payout] = Payout.objects.filter(account=wallet.account)
    return payout


def exact_balance(wallet: Wallet) -> int:
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return wallet_exact_balance(account=wallet.account, tenant=wallet.tenant)


def webhook_events() -> list[WebhookEvent]:
    with system_context("test: webhook events"):
        return list(WebhookEvent.objects.order_by("received_at", "pk"))


def process() -> list[str]:
    """Run the pending `webhook.received` messages through their consumer (and nothing else: the
    payouts' own `payout.created` messages would call a real provider)."""
    return drain_outbox(topics={"webhook.received"})


def post_webhook(provider: str, body: bytes, headers: dict[str, str]) -> HttpResponse:
    sent = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    return Client().post(f"/webhooks/{provider}", data=body, content_type="application/json", headers=sent)


# --- Stripe: Connect transfer events (data.object is the Transfer) --------------------------


def stripe_transfer_event(
    event_type: str,
    *,
    transfer_id: str,
    payout_id: str | None,
    amount: int = AMOUNT,
    amount_reversed: int = 0,
    event_id: str | None = None,
) -> bytes:
    transfer: dict[str, Any] = {
        "id": transfer_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": amount_reversed,
        "balance_transaction": "txn_1MiN3gLkdIwHu7ixxapQrznl",
        "created": int(time.time()) - 60,
        "currency": "eur",
        "description": f"Darkroom payout {payout_id}",
        "destination": DESTINATIONS["stripe"],
        "destination_payment": "py_1MiN3gQ9PRzxEwkZWTPGNq9o",
        "livemode": False,
        "metadata": {"payout_id": payout_id} if payout_id else {},
        "reversals": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 1 if amount_reversed else 0,
            "url": f"/v1/transfers/{transfer_id}/reversals",
        },
        "reversed": amount_reversed == amount,
        "source_transaction": None,
        "source_type": "card",
        "transfer_group": payout_id,
    }
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2025-04-30.basil",
            "created": int(time.time()),
            "data": {"object": transfer},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()


# --- Flutterwave: v3 transfer.completed (legacy `verif-hash` header) -------------------------


def flutterwave_transfer_completed(
    *, transfer_id: int, payout_id: str, status: str, amount: int | str = 25, message: str = ""
) -> bytes:
    return json.dumps(
        {
            "event": "transfer.completed",
            "event.type": "Transfer",
            "data": {
                "id": transfer_id,
                "account_number": "0690000031",
                "bank_name": "ACCESS BANK NIGERIA",
                "bank_code": "044",
                "fullname": "Ada Photographer",
                "created_at": "2026-11-24T10:00:00.000Z",
                "currency": "EUR",
                "debit_currency": "EUR",
                "amount": amount,
                "fee": 10.75,
                "status": status,
                "reference": payout_id,
                "meta": None,
                "narration": f"Darkroom payout {payout_id}",
                "approver": None,
                "complete_message": message or ("Successful" if status == "SUCCESSFUL" else ""),
                "requires_approval": 0,
                "is_approved": 1,
            },
        }
    ).encode()


def verif_hash(secret_hash: str | None = None) -> dict[str, str]:
    return {"verif-hash": settings.FLUTTERWAVE_SECRET_HASH if secret_hash is None else secret_hash}


# --- PayPal: PAYMENT.PAYOUTS-ITEM.* -----------------------------------------------------------

ITEM_STATUS_OF_EVENT = {
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED": "SUCCESS",
    "PAYMENT.PAYOUTS-ITEM.FAILED": "FAILED",
    "PAYMENT.PAYOUTS-ITEM.RETURNED": "RETURNED",
    "PAYMENT.PAYOUTS-ITEM.REFUNDED": "REFUNDED",
    "PAYMENT.PAYOUTS-ITEM.DENIED": "DENIED",
    "PAYMENT.PAYOUTS-ITEM.BLOCKED": "BLOCKED",
    "PAYMENT.PAYOUTS-ITEM.UNCLAIMED": "UNCLAIMED",
}


def paypal_item_event(event_type: str, *, batch_id: str, payout_id: str, value: str = "25.00") -> bytes:
    item_id = f"ITEM{uuid.uuid4().hex[:9].upper()}"
    return json.dumps(
        {
            "id": f"WH-{uuid.uuid4().hex[:17].upper()}",
            "event_version": "1.0",
            "create_time": "2026-11-24T10:00:00.000Z",
            "resource_type": "payouts_item",
            "event_type": event_type,
            "summary": f"A payout item is {ITEM_STATUS_OF_EVENT[event_type].lower()}",
            "resource": {
                "payout_item_id": item_id,
                "transaction_id": "0C413693MN970190K",
                "activity_id": "0E158638XS0329106",
                "transaction_status": ITEM_STATUS_OF_EVENT[event_type],
                "payout_item_fee": {"currency": "EUR", "value": "0.25"},
                "payout_batch_id": batch_id,
                "payout_item": {
                    "recipient_type": "EMAIL",
                    "amount": {"currency": "EUR", "value": value},
                    "note": f"Darkroom payout {payout_id}",
                    "receiver": DESTINATIONS["paypal"],
                    "sender_item_id": payout_id,
                    "recipient_wallet": "PAYPAL",
                },
                "time_processed": "2026-11-24T10:00:00Z",
                "links": [
                    {
                        "rel": "self",
                        "href": f"https://api.sandbox.paypal.com/v1/payments/payouts-item/{item_id}",
                        "method": "GET",
                    },
                    {
                        "rel": "batch",
                        "href": f"https://api.sandbox.paypal.com/v1/payments/payouts/{batch_id}",
                        "method": "GET",
                    },
                ],
            },
            "links": [],
        }
    ).encode()
