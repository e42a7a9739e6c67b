"""A studio refunds a paid sale in full, from its sale page (owners) or the API: one `studio`
refund through the provider adapter, audited; when the provider's refund webhook arrives the sale
is refunded, its downloads stop and the photographers' credits are reversed (sandbox provider,
real Postgres)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from apps.catalog.models import StockRestock
from apps.commerce.models import Checkout, Entitlement, Refund
from apps.commerce.services.payment import TOPIC_REFUND_REQUESTED
from apps.commerce.services.refund_mail import TOPIC_CHECKOUT_REFUNDED, refunded_mail_send
from apps.ledger.models import LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture by name
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_provider
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, refund_lines_on, signed_in, sold, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def refund_messages() -> int:
    with system_context("test"):
        return OutboxMessage.objects.filter(topic=TOPIC_REFUND_REQUESTED).count()


def ledger_keys(org_id: int) -> list[str]:
    with system_context("test"):
        return sorted(LedgerEvent.objects.filter(tenant_id=org_id).values_list("idempotency_key", flat=True))


def test_the_owner_refunds_a_sale_once_and_the_provider_confirms_it(studio: StudioPeople) -> None:
    # given: a paid sale with its download and the photographer's credit
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk})
    assert [key for key in ledger_keys(studio.org.pk) if key.startswith("sale:")]
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{checkout_id}/")
    assert "Refund this sale" in text(page) and "No refunds." in text(page)
    # when: the refund form is submitted twice (a double click)
    action = f"/studio/sales/{checkout_id}/refund"
    form = {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": refund_lines_on(page)}
    first, second = owner.post(action, form), owner.post(action, form)
    # then: one refund of the whole amount, one message, one audit row naming the owner
    assert (first.status_code, second.status_code) == (303, 303)
    with tenant_context(studio.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout_id)
        [audit] = AuditLog.objects.filter(action="checkout.refund_request", target_id=checkout_id)
        amount = Checkout.objects.get(pk=checkout_id).amount_minor
    assert (refund.reason, refund.status, refund.amount_minor) == ("studio", "requested", amount)
    assert refund_messages() == 1 and audit.actor_user_id == studio.owner.pk
    pending = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "Refunded by the studio" in pending and "Refund this sale" not in pending
    # when: the refund's consumer asks the provider, which confirms by its refund webhook
    drain_outbox()
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}")]) == [200]
    drain_outbox()
    # then: the sale is refunded, its downloads revoked and the credit reversed
    with tenant_context(studio.org.pk):
        refund.refresh_from_db()
        checkout = Checkout.objects.get(pk=checkout_id)
        revoked = list(Entitlement.objects.filter(checkout_id=checkout_id).values_list("revoked_at", flat=True))
    assert refund.status == "submitted" and refund.provider_refund_id
    assert checkout.status == "refunded" and revoked and all(revoked)
    assert [key for key in ledger_keys(studio.org.pk) if key.startswith("refund:")]
    # and: the sale page says the refund is done, no longer only submitted
    done = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "Refunded: Sandbox (local) confirmed it on" in done and "Submitted to the provider" not in done
    # and: the buyer is told once, with how much went back, why, and the link to the order
    drain_outbox()
    [told] = mail.outbox
    assert told.to == [checkout.email] and told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert f"{studio.org.name} refunded your order." in told.body and f"/s/{studio.org.slug}/orders/" in told.body
    with system_context("test"):
        [message] = OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_REFUNDED)
    with tenant_context(studio.org.pk):
        assert refunded_mail_send(message_id=message.pk, checkout_id=checkout_id) is False  # a redelivery
    assert len(mail.outbox) == 1
    # and: a fresh form for the refunded sale is refused, nothing more is asked
    again = owner.post(action, {"nonce": "another-nonce", "confirm": "on", "lines": form["lines"]})
    assert again.status_code == 409 and "Only a paid order can be refunded" in text(again)
    assert refund_messages() == 1


def test_the_refund_needs_its_confirmation_and_an_owner(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk})
    action = f"/studio/sales/{checkout_id}/refund"
    # given: staff see the sale but no refund form, and cannot post one
    staff = signed_in(studio.staff)
    assert "Refund this sale" not in text(staff.get(f"/studio/sales/{checkout_id}/"))
    assert staff.post(action, {"nonce": "n1", "confirm": "on"}).status_code == 403
    # and: the owner's form without the confirmation is re-rendered with 400
    owner = signed_in(studio.owner)
    assert owner.post(action, {"nonce": "n2"}).status_code == 400
    assert refund_messages() == 0


def test_the_api_refunds_once_and_refuses_unpaid_and_other_studios_checkouts(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    shop = make_shop(org=studio.org)
    paid, unpaid = (
        sold(studio, shop, {"product": shop.download.pk}),
        sold(studio, shop, {"product": shop.download.pk}, pay=False),
    )
    client = studio.bundle.client()

    def refund(checkout_id: str, client: Any = client) -> Any:
        return client.post(f"/api/v1/checkouts/{checkout_id}/refund", HTTP_IDEMPOTENCY_KEY=new_key())

    # when: the API refunds the paid checkout
    accepted = refund(paid)
    # then: 202 with the refund; a second request (a new key) finds it under way
    assert accepted.status_code == 202, accepted.content
    body = accepted.json()
    assert (body["checkout_id"], body["reason"], body["status"]) == (paid, "studio", "requested")
    again = refund(paid)
    assert again.status_code == 409 and again.json()["type"].endswith("/refund-already-requested")
    # and: a body with any field is refused (the whole amount is refunded), writing nothing
    odd = client.post(
        f"/api/v1/checkouts/{unpaid}/refund", {"amount_minor": 1}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()
    )
    assert odd.status_code == 400
    # and: an unpaid checkout and another studio's are refused, writing nothing

    assert refund(unpaid).json()["type"].endswith("/checkout-not-refundable")
    assert refund(paid, other_studio.bundle.client()).status_code == 404
    assert refund_messages() == 1


def test_a_refund_can_put_unshipped_prints_back_in_stock_once_it_lands(studio: StudioPeople) -> None:
    # given: a paid sale of 2 A4 prints (stock 10 → 8), not shipped
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk, "quantity": 2})
    assert shop.stock_quantity() == 8
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{checkout_id}/")
    assert "Put the prints back in stock" in text(page)
    # when: the owner refunds it, asking for the prints back in stock
    action = f"/studio/sales/{checkout_id}/refund"
    form = {
        "nonce": form_nonce_on(page, action),
        "confirm": "on",
        "restock_prints": "on",
        "lines": refund_lines_on(page),
    }
    assert owner.post(action, form).status_code == 303
    # then: nothing moves until the provider confirms the refund
    drain_outbox()
    assert shop.stock_quantity() == 8
    # when: the refund lands (its message delivered twice)
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}")], duplicates=2) == [200, 200]
    drain_outbox()
    # then: the two prints are for sale again, once, audited as the refund's restock
    assert shop.stock_quantity() == 10
    with tenant_context(studio.org.pk):
        assert StockRestock.objects.filter(product_id=shop.print.pk, added_quantity=2).count() == 1


def test_prints_already_shipped_or_absent_cannot_go_back_in_stock(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    downloads_only = sold(studio, shop, {"product": shop.download.pk})
    client = studio.bundle.client()
    refused = client.post(
        f"/api/v1/checkouts/{downloads_only}/refund",
        {"restock_prints": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    assert refused.status_code == 409 and refused.json()["type"].endswith("/prints-not-restockable")
    # and: the sale page of a downloads-only sale does not offer it
    assert "Put the prints back in stock" not in text(signed_in(studio.owner).get(f"/studio/sales/{downloads_only}/"))
    assert refund_messages() == 0
