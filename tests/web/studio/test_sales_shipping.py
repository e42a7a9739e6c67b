"""The studio's sales: the "Prints to ship" list, a sale's detail page (owners and staff only,
this studio's sales only) and its "Mark as shipped" form (once per form, one e-mail)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from apps.commerce.models import CheckoutShipping
from apps.commerce.services.fulfilment import TOPIC_CHECKOUT_SHIPPED
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, sold, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def test_the_sale_page_shows_lines_address_and_ships_once(studio: StudioPeople) -> None:
    # given: a paid sale of 2 A4 prints and a download
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk, "quantity": 2}, {"product": shop.download.pk})
    owner = signed_in(studio.owner)
    # then: the sales list links it and counts it among the prints to ship
    sales = text(owner.get("/studio/sales/"))
    assert f'href="/studio/sales/{checkout_id}/"' in sales and "Prints to ship (1)" in sales
    assert f'href="/studio/sales/{checkout_id}/"' in text(owner.get("/studio/sales/?to_ship=1"))
    # and: its page shows the lines with size and quantity, amounts, e-mail, address, status
    page = owner.get(f"/studio/sales/{checkout_id}/")
    body = text(page)
    assert page.status_code == 200
    assert (
        '<td data-label="Size">A4</td>' in body
        and '<td class="num" data-label="Quantity">2</td>' in body
        and "50.00 EUR" in body
        and "59.00 EUR" in body
    )
    assert "ann@example.test" in body and "Hauptstrasse 1" in body and "10115 Berlin" in body and "Germany" in body
    assert "Not shipped yet" in body and "Mark as shipped" in body
    # when: the "Mark as shipped" form is submitted twice (a double click)
    action = f"/studio/sales/{checkout_id}/ship"
    form = {"nonce": form_nonce_on(page, action), "carrier": "DHL", "tracking_reference": "JJD000390007"}
    first, second = owner.post(action, form), owner.post(action, form)
    # then: one effect: shipped, one audit row, one message, and after its consumer, one e-mail
    assert (first.status_code, second.status_code) == (303, 303)
    assert first["Location"] == f"/studio/sales/{checkout_id}/"
    with tenant_context(studio.org.pk):
        shipping = CheckoutShipping.objects.get(checkout_id=checkout_id)
        assert AuditLog.objects.filter(action="checkout.shipped", target_id=checkout_id).count() == 1
    assert (shipping.fulfilment_status, shipping.carrier, shipping.tracking_reference) == (
        "shipped",
        "DHL",
        "JJD000390007",
    )
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED).count() == 1
    drain_outbox()
    drain_outbox()
    assert len(mail.outbox) == 1 and "JJD000390007" in mail.outbox[0].body
    # and: the page shows it shipped, without the form; the to-ship list is empty
    after = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "Shipped" in after and "JJD000390007" in after and f'action="{action}"' not in after
    assert "No prints waiting to be shipped." in text(owner.get("/studio/sales/?to_ship=1"))
    # and: a fresh form for the shipped sale is refused with 409, nothing changes
    again = owner.post(action, {"nonce": "another-nonce", "carrier": "UPS"})
    assert again.status_code == 409 and "Already shipped" in text(again)
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=TOPIC_CHECKOUT_SHIPPED).count() == 1


def test_staff_can_ship_photographers_cannot_see_sales(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk})
    staff = signed_in(studio.staff)
    page = staff.get(f"/studio/sales/{checkout_id}/")
    assert page.status_code == 200 and "Mark as shipped" in text(page)
    photographer = signed_in(studio.photographer)
    assert photographer.get(f"/studio/sales/{checkout_id}/").status_code == 403
    assert photographer.post(f"/studio/sales/{checkout_id}/ship", {"carrier": "DHL"}).status_code == 403
    with tenant_context(studio.org.pk):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"


def test_another_studios_sale_is_not_found(studio: StudioPeople, other_studio: StudioPeople) -> None:
    shop = make_shop(org=other_studio.org, currency="USD")
    checkout_id = sold(other_studio, shop, {"product": shop.print.pk})
    owner = signed_in(studio.owner)
    assert owner.get(f"/studio/sales/{checkout_id}/").status_code == 404
    assert owner.post(f"/studio/sales/{checkout_id}/ship", {"nonce": "n", "carrier": "DHL"}).status_code == 404
    assert owner.get("/studio/sales/00000000-0000-0000-0000-000000000000/").status_code == 404
    with tenant_context(other_studio.org.pk):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"


def test_a_sale_without_prints_has_nothing_to_ship(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk})
    owner = signed_in(studio.owner)
    body = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "No prints in this sale" in body and "Mark as shipped" not in body
    refused = owner.post(f"/studio/sales/{checkout_id}/ship", {"nonce": "n1", "carrier": "DHL"})
    assert refused.status_code == 409
    assert "Prints to ship (0)" in text(owner.get("/studio/sales/"))


def test_an_unpaid_checkout_is_no_sale_and_cannot_be_shipped(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk}, pay=False)
    owner = signed_in(studio.owner)
    assert owner.get(f"/studio/sales/{checkout_id}/").status_code == 404
    assert owner.post(f"/studio/sales/{checkout_id}/ship", {"nonce": "n2", "carrier": "DHL"}).status_code == 404
    with tenant_context(studio.org.pk):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"


def test_a_missing_carrier_re_renders_the_form(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk})
    owner = signed_in(studio.owner)
    refused = owner.post(
        f"/studio/sales/{checkout_id}/ship", {"nonce": "n3", "carrier": "", "tracking_reference": "T1"}
    )
    assert refused.status_code == 400
    assert "This field is required." in text(refused) and 'value="T1"' in text(refused)
    with tenant_context(studio.org.pk):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"


def test_every_sale_downloads_as_csv_for_owners_and_staff_only(studio: StudioPeople) -> None:
    import csv
    import io

    # given: a paid sale with a print and a download, and a checkout never paid
    shop = make_shop(org=studio.org)
    paid = sold(studio, shop, {"product": shop.print.pk}, {"product": shop.download.pk})
    sold(studio, shop, {"product": shop.download.pk}, pay=False)
    staff = signed_in(studio.staff)
    assert 'href="/studio/sales.csv"' in text(staff.get("/studio/sales/"))
    # when: staff download the sales
    response = staff.get("/studio/sales.csv")
    # then: a CSV attachment with the header and the one sale, amounts exact in major units
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(f'attachment; filename="darkroom-{studio.org.slug}-sales-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["checkout_id", "created_at_utc", "paid_at_utc", "status"]
    [sale] = rows[1:]
    assert (sale[0], sale[3], sale[5], sale[6], sale[7], sale[8]) == (
        paid,
        "paid",
        "ann@example.test",
        "34.00",
        "EUR",
        "2",
    )
    assert (sale[9], sale[10], sale[11], sale[12]) == ("DE", "unfulfilled", "", "0.00") and sale[2]
    # and: a photographer may not
    assert signed_in(studio.photographer).get("/studio/sales.csv").status_code == 403


def test_a_sale_whose_whole_refund_is_under_way_offers_no_shipping(studio: StudioPeople) -> None:
    # given: a paid sale of prints whose whole refund was asked for, not yet confirmed by the provider
    from apps.commerce.services.payment import checkout_refund_request

    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.print.pk, "quantity": 2})
    with tenant_context(studio.org.pk):
        checkout_refund_request(tenant_id=studio.org.pk, checkout_id=checkout_id, actor_label="test")
    owner = signed_in(studio.owner)
    # when: the owner opens the sale
    body = text(owner.get(f"/studio/sales/{checkout_id}/"))
    # then: no "Mark as shipped" form (the service refuses it too: tests/commerce/test_shipping.py)
    assert "Mark as shipped" not in body
    refused = owner.post(f"/studio/sales/{checkout_id}/ship", {"nonce": "n1", "carrier": "DHL"})
    assert refused.status_code == 409 and "refund of the whole order" in text(refused)
    with system_context("test"):
        assert CheckoutShipping.objects.get(checkout_id=checkout_id).fulfilment_status == "unfulfilled"
