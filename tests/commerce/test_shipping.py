"""Shipping addresses of checkouts with prints, and marking them shipped: the API requires the
address exactly when there are prints (refusals write nothing), the row is tenant-isolated, the
constraints refuse bad rows, and a paid checkout ships once with one e-mail to the shopper."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, ProgrammingError, connection, transaction
from django.utils import timezone

from apps.commerce.errors import AlreadyShipped, CheckoutNotFound, CheckoutNotShippable
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping
from apps.commerce.services.fulfilment import (
    TOPIC_CHECKOUT_SHIPPED,
    InvalidShipment,
    checkout_mark_shipped,
    shipped_mail_send,
)
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, system_count
from tests.factories.commerce import SHIPPING_JSON

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("row_lock_strategy", "empty_broker"),
]


def _written() -> dict[str, int]:
    return {
        "checkouts": system_count(lambda: Checkout.objects.all()),
        "lines": system_count(lambda: CheckoutLine.objects.all()),
        "shipping": system_count(lambda: CheckoutShipping.objects.all()),
        "outbox": system_count(lambda: OutboxMessage.objects.all()),
    }


def _print_line(shop) -> dict:
    return {"product": shop.print.pk, "quantity": 2}


def paid_print_checkout(tenant, shop, *, with_download: bool = False) -> str:
    lines = [_print_line(shop)] + ([{"product": shop.download.pk}] if with_download else [])
    created = post_checkout(tenant.client(), checkout_body(shop, *lines))
    assert created.status_code == 201, created.content
    checkout_id = created.json()["id"]
    drain_outbox()
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox(topics={"webhook.received"})
    drain_outbox()
    mail.outbox.clear()  # the receipt
    return str(checkout_id)


def mark_shipped(tenant, checkout_id: str, **kwargs) -> CheckoutShipping:
    arguments = {"carrier": "DHL", "tracking_reference": "JJD000390007", "actor": tenant.owner, **kwargs}
    with tenant_context(tenant.org.pk), transaction.atomic():
        return checkout_mark_shipped(tenant_id=tenant.org.pk, checkout_id=checkout_id, **arguments)


# --- the API ---------------------------------------------------------------------------------


def test_a_checkout_with_prints_and_no_address_is_refused_and_writes_nothing(tenant_a, shop_a):
    # given: a body with a print and no shipping address
    body = {"email": "ann@example.test", "provider": "sandbox", "lines": [_print_line(shop_a)]}
    # when: it is posted
    response = post_checkout(tenant_a.client(), body)
    # then: a 400 problem naming `shipping`, and no row at all
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "/problems/invalid-shipping-address"
    assert "shipping" in response.json()["errors"]
    assert _written() == {"checkouts": 0, "lines": 0, "shipping": 0, "outbox": 0}
    assert shop_a.stock_quantity() == 10


@pytest.mark.parametrize(
    ("address", "field"),
    [
        ({**SHIPPING_JSON, "country": "XX"}, "shipping.country"),  # not an assigned ISO code
        ({**SHIPPING_JSON, "country": "DEU"}, "shipping.country"),  # alpha-3
        ({k: v for k, v in SHIPPING_JSON.items() if k != "city"}, "shipping.city"),
        ({**SHIPPING_JSON, "name": "   "}, "shipping.name"),
        ({**SHIPPING_JSON, "postal_code": "1" * 21}, "shipping.postal_code"),
        ({**SHIPPING_JSON, "phone": "call me maybe"}, "shipping.phone"),
        ({**SHIPPING_JSON, "line1": "Main St\x00 1"}, "shipping.line1"),
        ({**SHIPPING_JSON, "floor": "3"}, "shipping.floor"),  # unknown field
    ],
)
def test_an_incomplete_or_invalid_address_is_refused_with_the_field_named(tenant_a, shop_a, address, field):
    response = post_checkout(tenant_a.client(), checkout_body(shop_a, _print_line(shop_a), shipping=address))
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert _written()["checkouts"] == 0


def test_a_checkout_with_prints_stores_the_address_and_get_shows_it(tenant_a, shop_a):
    # given: a print and a download, and an address with optional parts and a lower-case country
    address = {**SHIPPING_JSON, "line2": " Hinterhaus ", "region": "", "phone": "+49 30 1234567", "country": "de"}
    body = checkout_body(shop_a, _print_line(shop_a), {"product": shop_a.download.pk}, shipping=address)
    # when: it is posted
    response = post_checkout(tenant_a.client(), body)
    # then: 201, and the address (trimmed, country upper-cased) is stored and shown, unfulfilled
    assert response.status_code == 201, response.content
    expected = {
        "name": "Ann Example",
        "line1": "Hauptstrasse 1",
        "line2": "Hinterhaus",
        "city": "Berlin",
        "postal_code": "10115",
        "region": "",
        "country": "DE",
        "phone": "+49 30 1234567",
        "fulfilment_status": "unfulfilled",
        "shipped_at": None,
        "carrier": "",
        "tracking_reference": "",
    }
    assert response.json()["shipping"] == expected
    detail = tenant_a.client().get(f"/api/v1/checkouts/{response.json()['id']}")
    assert detail.json()["shipping"] == expected
    with tenant_context(tenant_a.org.pk):
        stored = CheckoutShipping.objects.get(checkout_id=response.json()["id"])
    assert (stored.tenant_id, stored.country, stored.line2) == (tenant_a.org.pk, "DE", "Hinterhaus")


def test_a_download_only_checkout_with_an_address_is_refused_and_writes_nothing(tenant_a, shop_a):
    body = checkout_body(shop_a, {"product": shop_a.download.pk}, shipping=SHIPPING_JSON)
    response = post_checkout(tenant_a.client(), body)
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "/problems/invalid-shipping-address"
    assert _written() == {"checkouts": 0, "lines": 0, "shipping": 0, "outbox": 0}


def test_a_download_only_checkout_shows_null_shipping_and_writes_no_row(tenant_a, shop_a):
    response = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}))
    assert response.status_code == 201
    assert response.json()["shipping"] is None
    assert tenant_a.client().get(f"/api/v1/checkouts/{response.json()['id']}").json()["shipping"] is None
    assert _written()["shipping"] == 0


def test_a_checkout_with_prints_costs_no_extra_statement(tenant_a, shop_a):
    """The shipping row rides in the checkout's own INSERT (a second data-modifying CTE)."""
    from apps.commerce.services import LineIn, ShippingIn, checkout_create

    def statements(**kwargs) -> list[str]:
        from django.test.utils import CaptureQueriesContext

        with tenant_context(tenant_a.org.pk), CaptureQueriesContext(connection) as captured, transaction.atomic():
            checkout_create(tenant_id=tenant_a.org.pk, email="a@example.test", provider="sandbox", **kwargs)
        return [q["sql"] for q in captured.captured_queries]

    with_prints = statements(lines=[LineIn(product_id=shop_a.print.pk)], shipping=ShippingIn(**SHIPPING_JSON))
    downloads = statements(lines=[LineIn(product_id=shop_a.download.pk)])
    shipping_inserts = [sql for sql in with_prints if "commerce_checkoutshipping" in sql]
    assert len(shipping_inserts) == 1 and "commerce_checkoutline" in shipping_inserts[0]  # one statement
    assert not any("commerce_checkoutshipping" in sql for sql in downloads)


# --- isolation and constraints ---------------------------------------------------------------


def test_another_tenant_cannot_read_the_shipping_row(tenant_a, tenant_b, shop_a):
    # given: tenant A's checkout with an address
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, _print_line(shop_a)))
    checkout_id = created.json()["id"]
    # when: tenant B reads the table (as the runtime role, no tenant filter but RLS)
    with tenant_context(tenant_b.org.pk), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM commerce_checkoutshipping")
        raw = cursor.fetchone()[0]
        orm = CheckoutShipping.objects.filter(checkout_id=checkout_id).count()
    # then: it sees nothing, while A sees its row; B's API answers 404
    assert (raw, orm) == (0, 0)
    with tenant_context(tenant_a.org.pk):
        assert CheckoutShipping.objects.filter(checkout_id=checkout_id).count() == 1
    assert tenant_b.client().get(f"/api/v1/checkouts/{checkout_id}").status_code == 404


def test_another_tenant_cannot_write_a_shipping_row_for_a_checkout(tenant_a, tenant_b, shop_a):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}))
    with (
        tenant_context(tenant_b.org.pk),
        pytest.raises(ProgrammingError, match="row-level security"),
        transaction.atomic(),
    ):
        CheckoutShipping.objects.create(tenant_id=tenant_a.org.pk, checkout_id=created.json()["id"], **SHIPPING_JSON)
    with tenant_context(tenant_b.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        # its own tenant id, another tenant's checkout: the composite foreign key refuses it
        CheckoutShipping.objects.create(tenant_id=tenant_b.org.pk, checkout_id=created.json()["id"], **SHIPPING_JSON)
    assert _written()["shipping"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"fulfilment_status": "lost"},
        {"fulfilment_status": "shipped"},  # without shipped_at
        {"fulfilment_status": "shipped", "shipped_at": timezone.now()},  # without a carrier
        {"shipped_at": timezone.now()},  # unfulfilled with a date
        {"country": "de"},
        {"country": "D1"},
        {"name": ""},
        {"line1": ""},
        {"city": ""},
    ],
)
def test_constraints_refuse_bad_shipping_rows(tenant_a, shop_a, change):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, _print_line(shop_a)))
    with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        CheckoutShipping.objects.filter(checkout_id=created.json()["id"]).update(**change)


# --- marking shipped -------------------------------------------------------------------------


def test_a_paid_checkout_ships_once_audited_with_one_email(tenant_a, shop_a):
    # given: a paid checkout of prints and a download
    checkout_id = paid_print_checkout(tenant_a, shop_a, with_download=True)
    # when: the studio marks it shipped
    shipping = mark_shipped(tenant_a, checkout_id, carrier="  DHL ", tracking_reference=" JJD1 ")
    # then: shipped now, trimmed; one audit row and one outbox message
    assert (shipping.fulfilment_status, shipping.carrier, shipping.tracking_reference) == ("shipped", "DHL", "JJD1")
    assert shipping.shipped_at is not None and timezone.now() - shipping.shipped_at < timedelta(minutes=1)
    with tenant_context(tenant_a.org.pk):
        audit = AuditLog.objects.get(action="checkout.shipped", target_id=checkout_id)
    assert audit.actor_user_id == tenant_a.owner.pk and audit.data == {"carrier": "DHL", "tracking_reference": "JJD1"}
    with system_context("test"):
        [message] = OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED)
    # and: its consumer e-mails the shopper the tracking details, once, whatever the redeliveries
    assert drain_outbox() == [TOPIC_CHECKOUT_SHIPPED]
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ann@example.test"] and "have shipped" in sent.subject
    assert "Carrier: DHL" in sent.body and "Tracking reference: JJD1" in sent.body
    assert "Hauptstrasse 1" in sent.body and "Germany" in sent.body and "print A4" in sent.body
    with tenant_context(tenant_a.org.pk):
        assert shipped_mail_send(message_id=message.pk, checkout_id=checkout_id) is False
    assert len(mail.outbox) == 1
    # and: a second "mark shipped" is a 409 that changes nothing
    with pytest.raises(AlreadyShipped) as refused:
        mark_shipped(tenant_a, checkout_id, carrier="UPS")
    assert refused.value.status_code == 409
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED).count() == 1
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).carrier == "DHL"


def test_an_unpaid_checkout_cannot_be_shipped(tenant_a, shop_a):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, _print_line(shop_a)))
    with pytest.raises(CheckoutNotShippable) as refused:
        mark_shipped(tenant_a, created.json()["id"])
    assert refused.value.status_code == 409 and not isinstance(refused.value, AlreadyShipped)
    with system_context("test"):
        assert not OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED).exists()
        assert CheckoutShipping.objects.get().fulfilment_status == "unfulfilled"


def test_a_download_only_checkout_cannot_be_shipped(tenant_a, shop_a):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}))
    with pytest.raises(CheckoutNotShippable):
        mark_shipped(tenant_a, created.json()["id"])


def test_shipping_needs_a_carrier_and_an_existing_checkout_of_the_tenant(tenant_a, tenant_b, shop_a):
    checkout_id = paid_print_checkout(tenant_a, shop_a)
    with pytest.raises(InvalidShipment) as refused:
        mark_shipped(tenant_a, checkout_id, carrier="   ")
    assert "carrier" in refused.value.extra["errors"]
    with pytest.raises(CheckoutNotFound):
        mark_shipped(tenant_b, checkout_id)
    with pytest.raises(CheckoutNotFound):
        mark_shipped(tenant_a, str(uuid.uuid4()))
    with system_context("test"):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"


def test_a_failed_send_gives_the_claim_back_and_the_retry_sends_once(tenant_a, shop_a, settings):
    checkout_id = paid_print_checkout(tenant_a, shop_a)
    mark_shipped(tenant_a, checkout_id)
    with system_context("test"):
        message = OutboxMessage.objects.get(topic=TOPIC_CHECKOUT_SHIPPED)
    settings.EMAIL_BACKEND = "tests.commerce.test_receipts.ExplodingBackend"
    with tenant_context(tenant_a.org.pk), pytest.raises(ConnectionRefusedError):
        shipped_mail_send(message_id=message.pk, checkout_id=checkout_id)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with tenant_context(tenant_a.org.pk):
        assert shipped_mail_send(message_id=message.pk, checkout_id=checkout_id) is True
        assert shipped_mail_send(message_id=message.pk, checkout_id=checkout_id) is False
    assert len(mail.outbox) == 1


def test_an_order_whose_whole_refund_is_under_way_cannot_be_shipped(tenant_a, shop_a):
    # given: a paid order of prints whose whole refund the studio asked for, not yet confirmed by
    # the provider (its lines name no refund: the whole order's refund names none)
    from apps.commerce.services.payment import checkout_refund_request

    checkout_id = paid_print_checkout(tenant_a, shop_a)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        checkout_refund_request(tenant_id=tenant_a.org.pk, checkout_id=checkout_id, actor_label="test")
    # when: the studio marks it shipped meanwhile
    with pytest.raises(CheckoutNotShippable) as refused:
        mark_shipped(tenant_a, checkout_id)
    # then: refused (409) saying why, and nothing is shipped or e-mailed
    assert refused.value.status_code == 409 and "refund of the whole order" in str(refused.value)
    with system_context("test"):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"
        assert not OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED).exists()
