"""A studio refunds some items of a paid sale (sale page or API): a `studio_partial` refund of
those lines' amounts through the provider adapter; when the provider's webhook confirms that
refund, only those items' downloads stop and only their credits are reversed, and the sale stays
paid. The order's last items take what is left of the payment, and then the sale is refunded
(sandbox provider, real Postgres and Redis)."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from apps.catalog.models import StockRestock
from apps.commerce.models import Checkout, CheckoutLine, Entitlement, Refund
from apps.commerce.order_links import order_link
from apps.ledger.models import LedgerEvent
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_provider
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, refund_lines_on, signed_in, sold, text
from tests.web.studio.test_sale_refund import refund_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def refund_keys(org_id: int) -> list[str]:
    with system_context("test"):
        keys = LedgerEvent.objects.filter(tenant_id=org_id, idempotency_key__startswith="refund:")
        return sorted(keys.values_list("idempotency_key", flat=True))


def lines_of(org_id: int, checkout_id: str) -> dict[str, CheckoutLine]:
    with tenant_context(org_id):
        return {line.kind: line for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}


def refunds_of(org_id: int, checkout_id: str) -> list[Refund]:
    with tenant_context(org_id):
        return list(Refund.objects.filter(transaction__checkout_id=checkout_id).order_by("pk"))


def fresh(refund: Refund) -> Refund:
    with tenant_context(refund.tenant_id):
        return Refund.objects.get(pk=refund.pk)


def confirm(refund: Refund, checkout_id: str) -> list[int]:
    """The sandbox's webhook for this refund (it names the refund, amounts are cumulative)."""
    event = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=refund.provider_refund_id)
    statuses = deliver([event])
    drain_outbox()  # processing, and what it publishes
    return statuses


def sales_csv_row(client: Client, checkout_id: str) -> list[str]:
    """The sale's row of the studio's sales CSV."""
    rows = csv.reader(io.StringIO(b"".join(client.get("/studio/sales.csv").streaming_content).decode()))
    [row] = [row for row in rows if row[0] == checkout_id]
    return row


def test_the_owner_refunds_one_item_then_the_rest_and_each_lands_on_its_own(studio: StudioPeople) -> None:
    # given: a paid sale of a download (9.00) and two unshipped A4 prints (2 x 25.00)
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    lines = lines_of(studio.org.pk, checkout_id)
    assert shop.stock_quantity() == 8
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{checkout_id}/")
    assert "Items to refund" in text(page) and "Refund the items ticked" in text(page)
    # when: the owner ticks the download only (a double click)
    action = f"/studio/sales/{checkout_id}/refund"
    form = {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": [str(lines["download"].pk)]}
    assert [owner.post(action, form).status_code for _ in range(2)] == [303, 303]
    # then: one refund of the download's amount, naming its line; nothing moved for the shopper
    [partial] = refunds_of(studio.org.pk, checkout_id)
    assert (partial.reason, partial.amount_minor, partial.status) == ("studio_partial", 900, "requested")
    with tenant_context(studio.org.pk):
        assert list(partial.lines.values_list("pk", flat=True)) == [lines["download"].pk]
    assert refund_messages() == 1
    drain_outbox()  # the provider is asked
    partial = fresh(partial)
    assert partial.status == "submitted" and partial.landed_at is None
    with tenant_context(studio.org.pk):
        assert Entitlement.objects.get(checkout_id=checkout_id).revoked_at is None
    link = order_link(studio_slug=studio.org.slug, tenant_id=studio.org.pk, checkout_id=checkout_id)
    assert f"Download photo {shop.photo.pk} (original)" in text(Client().get(urlsplit(link).path, follow=True))
    # when: the provider confirms that refund (twice)
    event = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=partial.provider_refund_id)
    assert deliver([event], duplicates=2) == [200, 200]
    drain_outbox()
    # then: the download is revoked and its credit reversed, once; the sale stays paid
    partial = fresh(partial)
    with tenant_context(studio.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "paid"
        assert Entitlement.objects.get(checkout_id=checkout_id).revoked_at is not None
    assert partial.landed_at is not None
    assert refund_keys(studio.org.pk) == [f"refund:{checkout_id}:{lines['download'].pk}"]
    [told] = mail.outbox
    assert told.subject.startswith(f"Part of your payment to {studio.org.name} was refunded")
    assert "9.00 EUR of your payment" in told.body and f"download of photo {shop.photo.pk}" in told.body
    assert "the rest of your order is yours as before" in told.body
    # and: the shopper's order page marks the download refunded and no longer links it
    order_page = text(Client().get(urlsplit(link).path, follow=True))
    assert "Refunded" in order_page and "The studio refunded the items marked refunded" in order_page
    assert f"Download photo {shop.photo.pk} (original)" not in order_page and "Paid" in order_page
    # and: the sales list, the overview and the CSV count the 9.00 that went back
    assert "59.00 EUR, 9.00 EUR refunded" in text(owner.get("/studio/sales/"))
    assert "59.00 EUR, 9.00 EUR refunded" in text(owner.get("/studio/"))
    assert sales_csv_row(owner, checkout_id)[3::9] == ["paid", "9.00"]
    # and: the sale page shows the item refunded and offers the prints alone
    page = owner.get(f"/studio/sales/{checkout_id}/")
    assert "Refunded" in text(page) and "Items to refund" not in text(page) and "Refund this item" in text(page)
    # when: the owner refunds what is left, with the prints back in stock
    assert refund_lines_on(page) == [str(lines["print"].pk)]
    form = {
        "nonce": form_nonce_on(page, action),
        "confirm": "on",
        "restock_prints": "on",
        "lines": refund_lines_on(page),
    }
    assert owner.post(action, form).status_code == 303
    rest = refunds_of(studio.org.pk, checkout_id)[-1]
    assert (rest.reason, rest.amount_minor) == ("studio_partial", 5000)
    drain_outbox()
    rest = fresh(rest)
    mail.outbox.clear()
    # and: the provider confirms it: the whole payment is back
    assert confirm(rest, checkout_id) == [200]
    # then: the sale is refunded, both credits reversed once, the prints back in stock once
    with tenant_context(studio.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "refunded"
        assert StockRestock.objects.filter(product_id=shop.print.pk, added_quantity=2).count() == 1
    assert shop.stock_quantity() == 10
    assert refund_keys(studio.org.pk) == sorted(f"refund:{checkout_id}:{line.pk}" for line in lines.values())
    assert all(refund.landed_at for refund in refunds_of(studio.org.pk, checkout_id))
    [told] = mail.outbox
    assert told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert "50.00 EUR of your payment" in told.body and "The refunded prints will not be sent." in told.body
    assert "no longer work" not in told.body  # (the download went back with its own refund)
    page = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "Refund this sale" not in page and "Items to refund" not in page
    assert sales_csv_row(owner, checkout_id)[3::9] == ["refunded", "59.00"]


def test_the_api_refunds_named_lines_and_refuses_other_lines_writing_nothing(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk}, {"product": shop.bulk.pk})
    lines = lines_of(studio.org.pk, checkout_id)
    other_shop = make_shop(org=other_studio.org)
    elsewhere = sold(other_studio, other_shop, {"product": other_shop.download.pk})
    foreign_line = lines_of(other_studio.org.pk, elsewhere)["download"].pk
    client = studio.bundle.client()

    def refund(body: dict[str, Any]) -> Any:
        url = f"/api/v1/checkouts/{checkout_id}/refund"
        return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=new_key())

    # when: lines that are not this checkout's, a line named twice, or none at all
    for body in (
        {"lines": [foreign_line]},
        {"lines": [lines["bulk"].pk, lines["bulk"].pk]},
        {"lines": []},
        {"lines": ["first"]},
    ):
        refused = refund(body)
        # then: 400 with a problem body, and nothing is written
        assert refused.status_code == 400, (body, refused.content)
        assert refused["Content-Type"].startswith("application/problem+json")
    assert refund({"lines": [foreign_line]}).json()["type"].endswith("/refund-lines-invalid")
    assert refunds_of(studio.org.pk, checkout_id) == [] and refund_messages() == 0
    # when: the bulk line is refunded
    accepted = refund({"lines": [lines["bulk"].pk]})
    assert accepted.status_code == 202, accepted.content
    body = accepted.json()
    assert (body["reason"], body["amount_minor"], body["line_ids"]) == ("studio_partial", 4900, [lines["bulk"].pk])
    assert body["landed_at"] is None
    # then: the same line again is under way (409); the other line may still be refunded
    again = refund({"lines": [lines["bulk"].pk]})
    assert again.status_code == 409 and again.json()["type"].endswith("/refund-already-requested")
    rest = refund({})
    assert rest.status_code == 202 and rest.json()["amount_minor"] == 2500
    assert rest.json()["line_ids"] == [lines["print"].pk]
    assert refund({}).json()["type"].endswith("/refund-already-requested")
    assert refund_messages() == 2
    # when: the bulk refund lands, the event-wide download stops; the print is still sold
    drain_outbox()
    bulk_refund = refunds_of(studio.org.pk, checkout_id)[0]
    assert confirm(bulk_refund, checkout_id) == [200]
    with tenant_context(studio.org.pk):
        [grant] = Entitlement.objects.filter(checkout_id=checkout_id)
        assert Checkout.objects.get(pk=checkout_id).status == "paid"
    assert grant.scope == "event" and grant.revoked_at is not None


def test_naming_every_item_the_first_time_is_the_whole_order_refund(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk}, {"product": shop.bulk.pk})
    every = [line.pk for line in lines_of(studio.org.pk, checkout_id).values()]
    response = studio.bundle.client().post(
        f"/api/v1/checkouts/{checkout_id}/refund", {"lines": every}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()
    )
    assert response.status_code == 202
    assert (response.json()["reason"], response.json()["amount_minor"], response.json()["line_ids"]) == (
        "studio",
        7400,
        [],
    )


def test_a_refused_item_refund_is_asked_again_or_superseded_with_other_items(studio: StudioPeople) -> None:
    # given: an item refund the provider refused
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    lines = lines_of(studio.org.pk, checkout_id)
    client = studio.bundle.client()
    url = f"/api/v1/checkouts/{checkout_id}/refund"
    first = client.post(url, {"lines": [lines["download"].pk]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key())
    assert first.status_code == 202

    def refuse(refund_id: int) -> None:
        with tenant_context(studio.org.pk):
            Refund.objects.filter(pk=refund_id).update(status=Refund.Status.FAILED, last_error="card closed")

    refuse(first.json()["id"])
    # then: a refusal of unknown lines names the refused refund's item among those refundable
    unknown = client.post(url, {"lines": [999_999]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key())
    assert unknown.status_code == 400
    assert sorted(unknown.json()["refundable_line_ids"]) == sorted(line.pk for line in lines.values())
    # when: the same item is named again, the refused refund is asked for again (a new key)
    retried = client.post(url, {"lines": [lines["download"].pk]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key())
    assert retried.status_code == 202 and retried.json()["id"] == first.json()["id"]
    [refund] = refunds_of(studio.org.pk, checkout_id)
    assert refund.status == "requested" and ":retry-" in refund.idempotency_key
    assert refund_messages() == 2
    # when: it is refused again, and its item is named with another one
    refuse(refund.pk)
    mixed = client.post(
        url, {"lines": [lines["download"].pk, lines["print"].pk]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()
    )
    # then: one new refund of both items (the whole payment: they are the order's last items)
    # under a key the provider never saw supersedes the refused one, which is not needed any more
    assert mixed.status_code == 202, mixed.json()
    assert (mixed.json()["amount_minor"], mixed.json()["line_ids"]) == (3400, sorted(lines[k].pk for k in lines))
    superseded, new = refunds_of(studio.org.pk, checkout_id)
    assert (superseded.status, superseded.last_error) == ("not_needed", "card closed")
    first_key = superseded.idempotency_key.split(":retry-")[0]  # a key the provider saw
    assert new.idempotency_key not in (first_key, superseded.idempotency_key) and refund_messages() == 3
