"""POST/GET /api/v1/checkouts: one transaction for checkout, lines, reservations and outbox row;
sold-out lines never charged; refusals write nothing; tenants never see each other's checkouts."""

from __future__ import annotations

import pytest

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, InventoryReservation, Transaction
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import (
    NOTHING_WRITTEN,
    checkout_write_counts,
    drain_outbox,
    new_key,
    pending_topics,
)
from tests.factories.catalog import EventFactory, PriceFactory, PriceListFactory, ProductFactory
from tests.factories.commerce import shipping_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("row_lock_strategy")]


def test_create_commits_checkout_lines_reservation_transaction_and_outbox(tenant_a, shop_a):
    # given: a shop with 10 A4 prints in stock
    body = checkout_body(
        shop_a,
        {"product": shop_a.download.pk, "photo": shop_a.photo.pk},
        {"product": shop_a.print.pk, "quantity": 2},
    )
    # when: the studio's API key creates a checkout
    response = post_checkout(tenant_a.client(), body)
    # then: 201 with the amount of both lines, no payment URL yet (created after commit)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "awaiting_payment_session"
    assert data["payment_url"] is None
    assert data["amount_minor"] == 900 + 2 * 2500
    assert data["currency"] == "EUR"
    assert [(line["kind"], line["state"], line["amount_minor"]) for line in data["lines"]] == [
        ("download", "confirmed", 900),
        ("print", "confirmed", 5000),
    ]
    # and: every row committed together, stock taken, one outbox message
    assert checkout_write_counts() == {"checkouts": 1, "lines": 2, "reservations": 1, "transactions": 1, "outbox": 1}
    assert pending_topics() == ["checkout.created"]
    assert shop_a.stock_quantity() == 8
    with tenant_context(tenant_a.org.pk):
        reservation = InventoryReservation.objects.get()
        txn = Transaction.objects.get()
    assert (reservation.status, reservation.quantity) == ("confirmed", 2)
    assert (txn.status, txn.amount_minor, txn.currency) == ("pending", 5900, "EUR")


def test_the_created_checkout_and_lines_are_the_rows_read_back(tenant_a, shop_a):
    """`checkout_create` writes checkout and lines in one hand-written statement and renders the
    201 from its own instances: every column of them must be what the database holds."""
    from apps.commerce.services import LineIn, checkout_create

    # given / when: a checkout of a download and two prints, through the service
    with tenant_context(tenant_a.org.pk):
        created = checkout_create(
            tenant_id=tenant_a.org.pk,
            email="buyer@example.test",
            provider="sandbox",
            lines=[
                LineIn(product_id=shop_a.download.pk, photo_id=shop_a.photo.pk),
                LineIn(product_id=shop_a.print.pk, quantity=2),
            ],
            return_url="https://shop.example.test/orders/42?from=darkroom",
            shipping=shipping_in(line2="  Hinterhaus  ", country="de"),
        )
        stored = Checkout.objects.get(pk=created.pk)
        stored_lines = list(CheckoutLine.objects.filter(checkout=stored).order_by("position"))
        stored_shipping = CheckoutShipping.objects.get(checkout=stored)

    # then: same values column by column, the lines carry their database ids, and the instances
    # count as saved (a later save() updates instead of inserting)
    def columns(instance):
        return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}

    assert columns(created) == columns(stored)
    assert stored.return_url == "https://shop.example.test/orders/42?from=darkroom"
    assert [columns(line) for line in created.lines_by_position] == [columns(line) for line in stored_lines]
    assert all(not instance._state.adding for instance in (created, *created.lines_by_position))
    assert [line.position for line in stored_lines] == [0, 1]
    # and: the shipping row, written in the same statement, trimmed, its country upper-cased
    assert columns(created.shipping) == columns(stored_shipping)
    assert (stored_shipping.line2, stored_shipping.country) == ("Hinterhaus", "DE")
    assert stored_shipping.fulfilment_status == "unfulfilled" and stored_shipping.shipped_at is None


def test_payment_session_is_created_after_commit_and_get_shows_it(tenant_a, shop_a):
    # given: a committed checkout
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    # when: the outbox consumer of checkout.created runs
    assert drain_outbox() == ["checkout.created"]
    # then: GET shows the sandbox pay page URL and the stored reference
    detail = tenant_a.client().get(f"/api/v1/checkouts/{created['id']}")
    assert detail.status_code == 200
    assert detail.json()["status"] == "awaiting_payment"
    assert detail.json()["payment_url"].endswith(f"/sandbox/pay/{created['id']}")
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=created["id"])
    assert checkout.sandbox_reference == f"sbx_{created['id']}"
    # and: running the consumer again (redelivery) changes nothing
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=created["id"]).payment_session_attempts == 1


def test_same_idempotency_key_replays_the_checkout(tenant_a, shop_a):
    # given: one body and one key
    key = new_key()
    body = checkout_body(shop_a, {"product": shop_a.print.pk, "quantity": 3})
    # when: the client retries it
    first = post_checkout(tenant_a.client(), body, key=key)
    second = post_checkout(tenant_a.client(), body, key=key)
    # then: the same checkout, stock taken once
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["id"] == second.json()["id"]
    assert checkout_write_counts()["checkouts"] == 1
    assert shop_a.stock_quantity() == 7


def test_sold_out_line_is_marked_and_never_charged(tenant_a, shop_a):
    # given: one print left
    with tenant_context(tenant_a.org.pk):
        type(shop_a.stock).objects.filter(pk=shop_a.stock.pk).update(quantity=1)
    # when: a checkout asks for a download and two prints
    response = post_checkout(
        tenant_a.client(),
        checkout_body(shop_a, {"product": shop_a.download.pk}, {"product": shop_a.print.pk, "quantity": 2}),
    )
    # then: the print line is sold out, the amount covers the download only, stock untouched
    data = response.json()
    assert response.status_code == 201
    assert [line["state"] for line in data["lines"]] == ["confirmed", "sold_out"]
    assert data["amount_minor"] == 900
    assert shop_a.stock_quantity() == 1
    with tenant_context(tenant_a.org.pk):
        assert InventoryReservation.objects.get().status == "rejected"
        assert Transaction.objects.get().amount_minor == 900
    # and: the provider session is for the download only
    drain_outbox()
    from apps.payments.providers.registry import get_provider

    details = get_provider("sandbox").session_details(reference=f"sbx_{data['id']}")  # type: ignore[attr-defined]
    assert details["amount_minor"] == 900


def test_checkout_with_nothing_left_is_sold_out_and_gets_no_session(tenant_a, shop_a):
    # given: no prints left
    with tenant_context(tenant_a.org.pk):
        type(shop_a.stock).objects.filter(pk=shop_a.stock.pk).update(quantity=0)
    # when: a checkout asks only for a print
    response = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.print.pk}))
    # then: sold out, nothing to charge, no transaction, and no session after the consumer ran
    data = response.json()
    assert (response.status_code, data["status"], data["amount_minor"]) == (201, "sold_out", 0)
    drain_outbox()
    detail = tenant_a.client().get(f"/api/v1/checkouts/{data['id']}").json()
    assert (detail["status"], detail["payment_url"], detail["transaction_status"]) == ("sold_out", None, None)
    assert checkout_write_counts()["transactions"] == 0


def test_return_url_is_stored_and_shown_by_create_and_get(tenant_a, shop_a):
    # given: an integrator's storefront page for this order
    return_url = "https://shop.example.test/orders/A-1001?lang=en"
    # when: the checkout is created with it
    response = post_checkout(
        tenant_a.client(), {**checkout_body(shop_a, {"product": shop_a.download.pk}), "return_url": return_url}
    )
    # then: the 201 and the GET show it, and the row holds it
    assert response.status_code == 201, response.content
    assert response.json()["return_url"] == return_url
    detail = tenant_a.client().get(f"/api/v1/checkouts/{response.json()['id']}").json()
    assert detail["return_url"] == return_url
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=response.json()["id"]).return_url == return_url


@pytest.mark.parametrize("body_extra", [{}, {"return_url": ""}])
def test_without_return_url_the_checkout_shows_null(tenant_a, shop_a, body_extra):
    response = post_checkout(
        tenant_a.client(), {**checkout_body(shop_a, {"product": shop_a.download.pk}), **body_extra}
    )
    assert response.status_code == 201, response.content
    assert response.json()["return_url"] is None
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=response.json()["id"]).return_url == ""


@pytest.mark.parametrize(
    ("return_url", "problem"),
    [
        # refused by the serializer's URL validation
        ("/orders/1", "validation-error"),
        ("shop.example.test/orders/1", "validation-error"),
        ("ftp://shop.example.test/orders/1", "validation-error"),
        ("javascript:alert(1)", "validation-error"),
        ("https://shop.example.test/" + "a" * 2000, "validation-error"),
        (42, "validation-error"),
        # accepted as a URL by Django, refused by checkout_create
        ("https://bücher.example/orders/1", "invalid-return-url"),
        ("https://user:secret@shop.example.test/orders/1", "invalid-return-url"),
    ],
)
def test_an_invalid_return_url_is_refused_and_writes_nothing(tenant_a, shop_a, return_url, problem):
    # given: a valid checkout body but for its return URL
    body = {**checkout_body(shop_a, {"product": shop_a.print.pk}), "return_url": return_url}
    # when: it is posted
    response = post_checkout(tenant_a.client(), body)
    # then: a 400 problem naming what is wrong, no row, stock untouched
    assert response.status_code == 400, response.content
    assert response.json()["type"] == f"/problems/{problem}"
    assert checkout_write_counts() == NOTHING_WRITTEN
    assert shop_a.stock_quantity() == 10


@pytest.mark.parametrize(
    "return_url",
    [
        "ftp://shop.example.test/orders/1",
        "shop.example.test/orders/1",
        "https:///orders/1",
        "https://shop.example.test:0/orders/1",
        "https://shop.example.test:99999/orders/1",
        "https://[::1/orders/1",
        "https://shop.example.test/orders/1\x00",
        "https://shop.example.test/my orders",
        "https://shop.example.test/" + "a" * 1975,  # 2001 characters
    ],
)
def test_checkout_create_refuses_a_return_url_no_provider_could_send_a_browser_to(tenant_a, shop_a, return_url):
    from apps.commerce.errors import InvalidReturnUrl
    from apps.commerce.services import LineIn, checkout_create

    # given / when: the service is called directly (as the web shop does) with a bad return URL
    with tenant_context(tenant_a.org.pk), pytest.raises(InvalidReturnUrl):
        checkout_create(
            tenant_id=tenant_a.org.pk,
            email="buyer@example.test",
            provider="sandbox",
            lines=[LineIn(product_id=shop_a.download.pk)],
            return_url=return_url,
        )
    # then: nothing written
    assert checkout_write_counts() == NOTHING_WRITTEN


def test_checkout_create_takes_a_dotless_host_and_the_longest_return_url(tenant_a, shop_a):
    from apps.commerce.services import LineIn, checkout_create

    # given: a deployment reached as http://web:8000 (a compose service name), and a URL of
    # exactly 2000 characters
    longest = "https://shop.example.test/" + "a" * 1974
    assert len(longest) == 2000
    with tenant_context(tenant_a.org.pk):
        for return_url in ["http://web:8000/s/studio/checkouts/1/", longest]:
            # when
            created = checkout_create(
                tenant_id=tenant_a.org.pk,
                email="buyer@example.test",
                provider="sandbox",
                lines=[LineIn(product_id=shop_a.download.pk)],
                return_url=return_url,
            )
            # then
            assert Checkout.objects.get(pk=created.pk).return_url == return_url


# A well-formed address (labels of 60) too long for the column (254): once a 500.
LONG_EMAIL = f"{'a' * 64}@{'.'.join(['b' * 60] * 4)}.test"


def _refusals(shop, other_shop):
    return [
        ("unknown product", {"lines": [{"product": 999_999}]}, 400),
        ("another tenant's product", {"lines": [{"product": other_shop.download.pk}]}, 400),
        ("download quantity 2", {"lines": [{"product": shop.download.pk, "quantity": 2}]}, 400),
        ("photo mismatch", {"lines": [{"product": shop.download.pk, "photo": shop.photo.pk + 10_000}]}, 400),
        ("bulk with a photo", {"lines": [{"product": shop.bulk.pk, "photo": shop.photo.pk}]}, 400),
        ("same item twice", {"lines": [{"product": shop.download.pk}, {"product": shop.download.pk}]}, 400),
        ("no lines", {"lines": []}, 400),
        ("unknown field", {"lines": [{"product": shop.download.pk}], "coupon": "FREE"}, 400),
        ("unknown line field", {"lines": [{"product": shop.download.pk, "size": "A3"}]}, 400),
        ("zero quantity", {"lines": [{"product": shop.print.pk, "quantity": 0}]}, 400),
        ("too many prints", {"lines": [{"product": shop.print.pk, "quantity": 1000}]}, 400),
        ("bad provider", {"lines": [{"product": shop.download.pk}], "provider": "bitcoin"}, 400),
        ("bad email", {"lines": [{"product": shop.download.pk}], "email": "not-an-email"}, 400),
        ("email over 254", {"lines": [{"product": shop.download.pk}], "email": LONG_EMAIL}, 400),
    ]


def test_refused_checkouts_write_nothing(tenant_a, shop_a, shop_b):
    for name, override, status in _refusals(shop_a, shop_b):
        # given: a body with one defect
        body = {**checkout_body(shop_a), **override}
        # when: it is posted
        response = post_checkout(tenant_a.client(), body)
        # then: a problem response, and no row anywhere
        assert response.status_code == status, (name, response.content)
        assert response["Content-Type"] == "application/problem+json", name
        assert checkout_write_counts() == NOTHING_WRITTEN, name
    assert shop_a.stock_quantity() == 10


def test_unpriced_product_and_mixed_currencies_are_refused_with_nothing_written(tenant_a, shop_a):
    # given: a second event priced in USD, and a product without a price
    usd_event = EventFactory(tenant=tenant_a.org)
    usd_price_list = PriceListFactory(event=usd_event, currency="USD")
    PriceFactory(price_list=usd_price_list, kind=ProductKind.DOWNLOAD, amount_minor=1000)
    usd_download = ProductFactory(event=usd_event, kind=ProductKind.DOWNLOAD)
    unpriced = ProductFactory(event=EventFactory(tenant=tenant_a.org), kind=ProductKind.DOWNLOAD)
    # when / then: mixing currencies is a 400, an unpriced product a 409, and both write nothing
    mixed = post_checkout(
        tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}, {"product": usd_download.pk})
    )
    assert (mixed.status_code, mixed.json()["type"]) == (400, "/problems/mixed-currencies")
    no_price = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": unpriced.pk}))
    assert (no_price.status_code, no_price.json()["type"]) == (409, "/problems/price-not-set")
    assert checkout_write_counts() == NOTHING_WRITTEN


def test_missing_idempotency_key_is_refused_and_writes_nothing(tenant_a, shop_a):
    response = tenant_a.client().post(
        "/api/v1/checkouts", checkout_body(shop_a, {"product": shop_a.download.pk}), format="json"
    )
    assert response.status_code == 400
    assert checkout_write_counts()["checkouts"] == 0


def test_tenants_never_see_each_others_checkouts(tenant_a, tenant_b, shop_a, shop_b, runtime_conn):
    # given: a checkout of tenant A
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    # when / then: tenant B's key gets a 404 for it, and its own listing context sees no row
    assert tenant_b.client().get(f"/api/v1/checkouts/{created['id']}").status_code == 404
    assert tenant_a.client().get(f"/api/v1/checkouts/{created['id']}").status_code == 200
    with tenant_context(tenant_b.org.pk):
        assert Checkout.objects.count() == 0
        assert CheckoutLine.objects.count() == 0
        assert Transaction.objects.count() == 0
    # and: as the runtime role with raw SQL, tenant B's setting shows nothing either
    with runtime_conn.cursor() as cursor:
        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_b.org.pk)])
        cursor.execute("SELECT count(*) FROM commerce_checkout")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_a.org.pk)])
        cursor.execute("SELECT count(*) FROM commerce_checkout")
        assert cursor.fetchone()[0] == 1
    runtime_conn.rollback()


def test_payment_session_retry_endpoint_refuses_a_checkout_that_has_one(tenant_a, shop_a):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    drain_outbox()
    response = tenant_a.client().post(
        f"/api/v1/checkouts/{created['id']}/payment-session", HTTP_IDEMPOTENCY_KEY=new_key()
    )
    assert (response.status_code, response.json()["type"]) == (409, "/problems/checkout-not-awaiting-payment-session")
    assert pending_topics() == []


def test_a_turned_off_sandbox_takes_no_checkout_no_webhook_and_shows_no_page(tenant_a, shop_a, settings):
    # given: a checkout made while the sandbox was on
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    drain_outbox()
    # when: the sandbox is turned off (as production must)
    settings.SANDBOX_ENABLED = False
    # then: no new sandbox checkout, no sandbox webhook, no pay page
    refused = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}))
    assert (refused.status_code, refused.json()["type"]) == (400, "/problems/payment-provider-unavailable")
    from django.test import Client

    assert Client().post("/webhooks/sandbox", data=b"{}", content_type="application/json").status_code == 404
    assert Client().get(f"/sandbox/pay/{created['id']}").status_code == 404
    assert checkout_write_counts()["checkouts"] == 1
