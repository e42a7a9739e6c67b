"""A sale's page as its owner reads it after refunding some of its items (QA walkthrough): the
form for the item left names it and what goes back, never "Refund this sale"."""

from __future__ import annotations

import re

import pytest

from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, sold, text
from tests.web.studio.test_sale_refund_items import confirm, lines_of, refunds_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def refund_form_of(page: str) -> str:
    found = re.search(r'<form[^>]*action="[^"]*/refund".*?</form>', page, re.S)
    assert found, "the page has no refund form"
    return found.group(0)


def test_the_form_for_the_item_left_names_it_and_its_amount(studio: StudioPeople) -> None:
    # given: a paid sale of a download (9.00) and two A4 prints (2 x 25.00) whose download the
    # owner refunded, the provider confirming it
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    lines = lines_of(studio.org.pk, checkout_id)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{checkout_id}/")
    action = f"/studio/sales/{checkout_id}/refund"
    form = {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": [str(lines["download"].pk)]}
    assert owner.post(action, form).status_code == 303
    drain_outbox()
    [partial] = refunds_of(studio.org.pk, checkout_id)
    assert confirm(partial, checkout_id) == [200]
    # when: the owner opens the sale again
    refund_form = refund_form_of(text(owner.get(f"/studio/sales/{checkout_id}/")))
    # then: the form names the prints and the 50.00 EUR that goes back, and its button says it
    # refunds that item (the sale was 59.00 EUR, 9.00 EUR of it already back)
    assert "Refund the item left" in refund_form
    assert f"Print A4, photo {shop.photo.pk} x 2" in refund_form and "50.00 EUR" in refund_form
    assert "Refund this item" in refund_form and "Refund this sale" not in refund_form


def test_a_recent_sale_on_the_overview_opens_its_sale_page(studio: StudioPeople) -> None:
    # given: a paid sale
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk})
    # when: the owner opens the overview
    overview = text(signed_in(studio.owner).get("/studio/"))
    # then: the sale's row links to its page (where it is shipped and refunded), not only "All sales"
    sales = re.search(r'<section aria-labelledby="sales-h">.*?</section>', overview, re.S)
    assert sales, "the overview lists recent sales"
    assert f'href="/studio/sales/{checkout_id}/"' in sales.group(0)
