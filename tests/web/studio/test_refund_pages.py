"""Refunds as a studio owner and a shopper meet them on the pages: the sale page's refund form
(some items, everything, the item left), the refund API, refused refunds asked for again or
superseded, parts refunded in the provider's dashboard, the sales list, overview and CSV, the
shopper's order page and refund e-mails (real Postgres and Redis; the sandbox plays the
provider). Refunded prints are not shipped; what the dashboard refunded is on the sale page; the
shopper is told what still works; a form shown after a refusal only offers what can be done;
labels, headings and messages say what happens. The last two tests walk a 3-item sale with a
refused refund superseded from the form, and a dashboard part followed by the page's item
refunds with the prints put back in stock."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from apps.catalog.models import StockRestock
from apps.commerce.models import CheckoutLine
from apps.commerce.order_links import order_link
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_provider
from tests.commerce.refunds import ask, confirmed, dashboard_refunds_everything, refused, status_of
from tests.commerce.test_refund_superseding import refund_rows
from tests.factories.commerce import Shop, make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, refund_lines_on, signed_in, sold, text
from tests.web.studio.test_sale_refund_items import lines_of, refunds_of, sales_csv_row

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


# --- reading pages as a user does ---------------------------------------------------------------


def visible(response: Any) -> str:
    """The page's main content as a reader sees it: tags stripped, whitespace collapsed."""
    html = text(response).split('id="main"', 1)[-1]
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#x27;", "'").split())


def refund_form_html(response: Any) -> str:
    found = re.search(r'<form[^>]*action="[^"]*/refund".*?</form>', text(response), re.S)
    return found.group(0) if found else ""


def shopper_page(studio: StudioPeople, checkout_id: str) -> Any:
    """The shopper's order page, opened from the signed link in their e-mails."""
    link = order_link(studio_slug=studio.org.slug, tenant_id=studio.org.pk, checkout_id=checkout_id)
    return Client().get(urlsplit(link).path, follow=True)


def shopper_row(page: Any, item: str) -> str:
    """The shopper page's table row of the item whose label starts with `item`."""
    rows = [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in re.findall(r"<tr>(.*?)</tr>", text(page), re.S)]
    [row] = [row for row in rows if row.startswith(item)]
    return row


def sale_row(page: Any, position: int) -> str:
    """The sale page's items-table row number `position` (1-based)."""
    items = text(page).split("<h2>Items</h2>", 1)[1].split("</table>", 1)[0]
    rows = [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in re.findall(r"<tr>(.*?)</tr>", items, re.S)]
    return rows[position]  # rows[0] is the header


def dashboard_refund(checkout_id: str, amount_minor: int, key: str) -> None:
    """The studio refunds `amount_minor` in the sandbox's own dashboard; its webhook is delivered
    and processed (the shopper's e-mail included)."""
    made = sandbox_provider().refund(reference=f"sbx_{checkout_id}", amount_minor=amount_minor, idempotency_key=key)
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=made.refund_id)]) == [
        200
    ]
    drain_outbox()


def post_refund(owner: Client, page: Any, checkout_id: str, lines: list[str], **extra: str) -> Any:
    """Submit the refund form `page` rendered, with `lines` ticked."""
    action = f"/studio/sales/{checkout_id}/refund"
    return owner.post(action, {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": lines, **extra})


def line_ids(studio: StudioPeople, checkout_id: str) -> list[int]:
    with tenant_context(studio.org.pk):
        return list(
            CheckoutLine.objects.filter(checkout_id=checkout_id).order_by("position").values_list("pk", flat=True)
        )


def mails() -> list[Any]:
    sent = list(mail.outbox)
    mail.outbox.clear()
    return sent


# --- a refunded print is not shipped ---------------------------------------------------


def test_a_refunded_print_is_not_left_in_prints_to_ship_nor_shipped_to_the_shopper(studio: StudioPeople) -> None:
    # given: a paid sale of a download (9.00) and two A4 prints (2 x 25.00, stock 10 -> 8); the
    # owner refunds the prints alone from the sale page, "Put the prints back in stock" ticked,
    # and the provider confirms: the shopper has their 50.00 back, the prints are for sale again
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    lines = lines_of(studio.org.pk, checkout_id)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{checkout_id}/")
    assert post_refund(owner, page, checkout_id, [str(lines["print"].pk)], restock_prints="on").status_code == 303
    [printed] = refunds_of(studio.org.pk, checkout_id)
    confirmed(printed, checkout_id)
    mails()
    assert shop.stock_quantity() == 10  # the two refunded prints are on sale again
    # when: the owner opens "Prints to ship", the sale, and the shopper their order
    to_ship = visible(owner.get("/studio/sales/?to_ship=1"))
    sale_page = owner.get(f"/studio/sales/{checkout_id}/")
    order_page = visible(shopper_page(studio, checkout_id))
    # then: nothing of this sale is left to ship
    problems = []
    if checkout_id[:8] in to_ship or "Prints to ship (1)" in to_ship:
        problems.append("'Prints to ship (1)' still lists the sale whose only prints were refunded")
    if "Mark as shipped" in visible(sale_page):
        problems.append("the sale page still offers 'Mark as shipped' for the refunded prints")
    if "The studio prepares your prints" in order_page:
        problems.append("the shopper's order page still says 'The studio prepares your prints'")
    # and: the "Mark as shipped" form the page offers ships them and e-mails the shopper
    ship = f"/studio/sales/{checkout_id}/ship"
    if 'action="' + ship + '"' in text(sale_page):
        shipped = owner.post(ship, {"nonce": form_nonce_on(sale_page, ship), "carrier": "DHL"})
        drain_outbox()
        told = [m.subject for m in mails() if "shipped" in m.subject]
        if shipped.status_code == 303 and told:
            problems.append(
                f"marking them shipped works and e-mails the shopper {told[0]!r} for prints refunded to them"
            )
    assert not problems, (
        "prints refunded (50.00 EUR back to the shopper, both units back in stock) are still treated as to "
        "ship: " + "; ".join(problems)
    )


# --- money refunded in the dashboard that completes the payment is on the sale page ------


def test_the_sale_page_shows_what_the_providers_dashboard_refunded_once_the_payment_is_back(
    studio: StudioPeople, sale: str, sale3: str
) -> None:
    owner = signed_in(studio.owner)
    problems = []
    # given: the whole 34.00 of one sale refunded in the provider's dashboard
    dashboard_refunds_everything(sale)
    drain_outbox()
    whole = owner.get(f"/studio/sales/{sale}/")
    assert status_of(studio, sale) == "refunded" and sales_csv_row(owner, sale)[12] == "34.00"
    # then: the sale page says where the money went, not "No refunds."
    if "No refunds." in visible(whole):
        problems.append(f"sale {sale[:8]} reads 'Status Refunded' and 'No refunds.' (the CSV says 34.00 refunded)")
    # given: of another sale (43.00) the first download (9.00) refunded through Darkroom, then the
    # rest (34.00) in the provider's dashboard
    first = ask(studio, sale3, [line_ids(studio, sale3)[0]])
    confirmed(first, sale3)
    dashboard_refund(sale3, 3400, "dashboard-rest")
    assert status_of(studio, sale3) == "refunded" and sales_csv_row(owner, sale3)[12] == "43.00"
    # then: its refunds add up to what went back
    rows = refund_rows(text(owner.get(f"/studio/sales/{sale3}/")))
    listed = sum(float(amount) for row in rows for amount in re.findall(r"(\d+\.\d\d) EUR", row))
    if listed != 43.0:
        problems.append(f"sale {sale3[:8]} (refunded, CSV 43.00) lists refunds of {listed:.2f} EUR: {rows}")
    assert not problems, (
        "money refunded in the provider's dashboard that completes the payment is never shown on the sale "
        "page: " + "; ".join(problems)
    )


# --- the shopper is not told refunded downloads keep working -----------------------------------


def test_the_shopper_is_not_told_their_downloads_keep_working_after_the_studio_refunded_them(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the order's download (9.00) through Darkroom, then 10.00 in the
    # provider's dashboard (the sale stays paid: 15.00 of 34.00 is not refunded)
    lines = lines_of(studio.org.pk, sale)
    confirmed(ask(studio, sale, [lines["download"].pk]), sale)
    mails()
    dashboard_refund(sale, 1000, "dashboard-part")
    [dashboard_mail] = mails()
    page = shopper_page(studio, sale)
    said = visible(page)
    assert "(original)" not in said  # the order's only download is gone
    # then: neither the e-mail nor the order page says the downloads are still theirs
    problems = []
    if "its downloads keep working" in dashboard_mail.body:
        problems.append(f"the e-mail {dashboard_mail.subject!r} says 'its downloads keep working'")
    if "its downloads are yours as before" in said:
        problems.append(
            "the order page says 'The studio refunded 10.00 EUR of your payment; the order and its downloads are "
            "yours as before' right under 'their downloads no longer work'"
        )
    assert not problems, "the shopper's only download was refunded and revoked, yet " + "; ".join(problems)


# --- the form shown again after a 409 offers what can still be done ----------------------------------


def test_the_refund_form_shown_again_after_a_refusal_offers_only_what_can_still_be_done(
    studio: StudioPeople, sale: str, sale3: str
) -> None:
    owner = signed_in(studio.owner)
    problems = []
    # given: two tabs of a sale of a download (9.00) and a print (25.00), both ticked; tab A
    # refunds the download alone, then tab B submits both
    url = f"/studio/sales/{sale}/"
    tab_a, tab_b = owner.get(url), owner.get(url)
    lines = lines_of(studio.org.pk, sale)
    assert post_refund(owner, tab_a, sale, [str(lines["download"].pk)]).status_code == 303
    refused_b = post_refund(owner, tab_b, sale, refund_lines_on(tab_b))
    assert refused_b.status_code == 409 and "are refunded or being refunded already" in visible(refused_b)
    # when: the owner presses the button the 409 page offers ("Refund the item left: Print A4 ...
    # 25.00 EUR goes back to the buyer" / "Refund this item")
    offered = visible(refused_b)
    assert "Refund this item" in offered and "25.00 EUR goes back to the buyer" in offered
    again = post_refund(owner, refused_b, sale, refund_lines_on(refused_b))
    if again.status_code != 303:
        problems.append(
            f"'Refund this item' on the 409 page answers {again.status_code} again: its hidden fields still name "
            f"the download refunded in tab A ({refund_lines_on(refused_b)})"
        )
    # given: two tabs of a 3-item sale; tab A refunds everything (43.00), tab B the first item
    url = f"/studio/sales/{sale3}/"
    tab_a, tab_b = owner.get(url), owner.get(url)
    assert post_refund(owner, tab_a, sale3, refund_lines_on(tab_a)).status_code == 303
    under_way = post_refund(owner, tab_b, sale3, refund_lines_on(tab_b)[:1])
    assert under_way.status_code == 409 and "already under way" in visible(under_way)
    # then: while the whole order's refund is under way the page offers no refund button
    form = refund_form_html(under_way)
    if "Refund this sale" in form:
        problems.append(
            "while the whole order's refund is under way, the 409 page offers a 'Refund items' form with a "
            "'Refund this sale' button (that can only answer 409 again)"
        )
    assert not problems, "; ".join(problems)


# --- the items of a refunded order read "Refunded" ----------------------------------------


def test_every_item_of_a_refunded_order_reads_refunded(studio: StudioPeople, sale: str) -> None:
    # given: the download (9.00) refunded through Darkroom, then the rest (25.00) in the provider's
    # dashboard: the whole 34.00 is back and the order is refunded
    lines = lines_of(studio.org.pk, sale)
    confirmed(ask(studio, sale, [lines["download"].pk]), sale)
    dashboard_refund(sale, 2500, "dashboard-rest")
    assert status_of(studio, sale) == "refunded"
    # when: the shopper and the owner look at the order
    order_print = shopper_row(shopper_page(studio, sale), "Print A4")
    studio_print = sale_row(signed_in(studio.owner).get(f"/studio/sales/{sale}/"), 2)
    # then: the print reads refunded like the download, not "Confirmed"
    assert "Confirmed" not in order_print and "Confirmed" not in studio_print, (
        "in a refunded order the download reads 'Refunded' but the print reads 'Confirmed' "
        f"(shopper: {order_print!r}; sale page: {studio_print!r})"
    )


# --- the API's 409 names the line ids it was given ----------------


def test_the_apis_refusal_names_the_lines_it_was_given(studio: StudioPeople, sale: str, sale3: str) -> None:
    # given: an API client refunded the second line of a 3-item sale
    ids = line_ids(studio, sale3)
    api = studio.bundle.client()
    url = f"/api/v1/checkouts/{sale3}/refund"
    assert api.post(url, {"lines": [ids[1]]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()).status_code == 202
    # when: it names that line again with the third
    refused_body = api.post(url, {"lines": [ids[1], ids[2]]}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()).json()
    # then: the problem names line ids[1], the id the client sent
    detail = refused_body["detail"]
    named = re.search(rf"\b{ids[1]}\b", detail) or refused_body.get("line_ids") == [ids[1]]
    assert named, (
        f"the client sent lines {[ids[1], ids[2]]}; the 409 says {detail!r}, naming the item's position on the "
        "sale page, which is no line id of the request (or another line's id)"
    )


# --- "Put the prints back in stock" only with a print to refund --------------------


def test_the_put_back_in_stock_box_is_offered_only_with_a_print_to_refund(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund (25.00) is asked and not confirmed yet; the form offers the item
    # left, the download
    lines = lines_of(studio.org.pk, sale)
    ask(studio, sale, [lines["print"].pk])
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{sale}/")
    assert "Download, photo" in visible(page) and "9.00 EUR goes back to the buyer" in visible(page)
    # when: the owner ticks the box the form offers with it
    offered = "Put the prints back in stock" in refund_form_html(page)
    if offered:
        answered = post_refund(owner, page, sale, refund_lines_on(page), restock_prints="on")
        # then: the box is not offered, or does what it says
        refusal = re.search(r"No prints to put back in stock: [^.]*\.", visible(answered))
        assert answered.status_code == 303, (
            "the form for the download left offers 'Put the prints back in stock'; ticking it answers "
            f"{answered.status_code}: {refusal.group(0) if refusal else visible(answered)[:200]!r}"
        )


# --- the web 409 advises what the form can do ---------------------------------------


def test_the_pages_refusal_for_items_beyond_what_is_left_says_what_to_tick(studio: StudioPeople, sale: str) -> None:
    # given: 10.00 of the 34.00 refunded in the provider's dashboard; the owner ticks the print
    # (25.00) alone, more than the 24.00 left
    dashboard_refund(sale, 1000, "dashboard-part")
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{sale}/")
    refused_page = post_refund(owner, page, sale, [str(lines_of(studio.org.pk, sale)["print"].pk)])
    assert refused_page.status_code == 409
    said = visible(refused_page)
    # then: the page's advice is one the form can follow (it needs at least one box ticked)
    assert "no items named" not in said, (
        "the sale page's 409 says 'Refund everything left at once (no items named)': API wording; the form "
        "refuses no ticked item ('Choose at least one item to refund.') and never says that ticking every "
        "item refunds the 24.00 EUR left, not the 34.00 EUR its boxes add up to"
    )


# --- the form promises no shipping back ---------------------------


def test_the_refund_form_does_not_promise_shipping_back_when_none_was_charged(studio: StudioPeople, sale: str) -> None:
    # given: a sale of a download (9.00) and a print (25.00) for 34.00: no shipping was charged
    page = signed_in(studio.owner).get(f"/studio/sales/{sale}/")
    said = visible(page)
    assert "Amount 34.00 EUR" in said and "9.00 EUR" in said and "25.00 EUR" in said
    # then: the form does not say a refund gives shipping back
    assert "gives back the shipping" not in refund_form_html(page), (
        "the refund form's help says 'refunding every item left also gives back the shipping', but Darkroom "
        "charges no shipping (the 34.00 EUR paid is the items' 9.00 + 25.00)"
    )


# --- the form's heading states no amount the form may not refund -------------------------


def test_the_refund_forms_heading_is_what_the_ticked_items_refund(studio: StudioPeople, sale: str) -> None:
    # given: the sale page of a 34.00 sale: a box per item, both ticked
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{sale}/")
    heading = re.search(r'<h3 id="refund-h">(.*?)</h3>', text(page), re.S)
    assert heading and "Refund the items ticked" in refund_form_html(page)
    # when: the owner unticks the print and presses the button
    done = owner.post(
        f"/studio/sales/{sale}/refund",
        {
            "nonce": form_nonce_on(page, f"/studio/sales/{sale}/refund"),
            "confirm": "on",
            "lines": [str(lines_of(studio.org.pk, sale)["download"].pk)],
        },
        follow=True,
    )
    # then: what the heading said is what was refunded
    message = re.search(r"Refund of ([0-9.]+ EUR) asked", visible(done))
    assert message and message.group(1) == "9.00 EUR"
    promised = re.findall(r"[0-9.]+ EUR", heading.group(1))
    assert promised in ([], [message.group(1)]), (
        f"the form is headed {heading.group(1).strip()!r} above its per-item boxes; with the print unticked "
        f"the same form does {message.group(0)!r}"
    )


# --- walkthroughs that work (paths no other module drives through the pages) --------------------


def test_a_3_item_sale_a_refused_refund_superseded_from_the_form_then_the_print_back_in_stock(
    studio: StudioPeople,
) -> None:
    # given: a paid sale of two downloads (9.00 each) and an A4 print (25.00): 43.00; stock 10 -> 9
    shop: Shop = make_shop(org=studio.org)
    _, second = shop.add_photo()
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": second.pk}, {"product": shop.print.pk})
    first_id, second_id, print_id = line_ids(studio, checkout_id)
    assert shop.stock_quantity() == 9
    owner = signed_in(studio.owner)
    url = f"/studio/sales/{checkout_id}/"
    # when: the owner refunds the second download; the provider refuses it
    page = owner.get(url)
    assert "Refund items" in visible(page) and len(refund_lines_on(page)) == 3
    assert post_refund(owner, page, checkout_id, [str(second_id)]).status_code == 303
    [first_try] = refunds_of(studio.org.pk, checkout_id)
    refused(first_try)
    # then: the page says so and offers all three items again
    page = owner.get(url)
    assert "Refund refused by the provider" in sale_row(page, 2)
    assert "Failed: Sandbox (local) refused it." in refund_rows(text(page))[0]
    assert sorted(refund_lines_on(page)) == sorted(str(i) for i in (first_id, second_id, print_id))
    # when: the owner ticks both downloads instead
    done = owner.get(post_refund(owner, page, checkout_id, [str(first_id), str(second_id)])["Location"])
    # then: one refund of 18.00 supersedes the refused one, which says why
    assert "Refund of 18.00 EUR asked of Sandbox (local)." in visible(done)
    superseded, both = refund_rows(text(done))
    assert "Not needed: its items were asked for again in a later refund, after Sandbox (local) refused it" in (
        superseded
    )
    assert "1, 2" in both and "18.00 EUR" in both and "Requested" in both
    # when: the provider confirms it
    confirmed(refunds_of(studio.org.pk, checkout_id)[-1], checkout_id)
    # then: the shopper is told about both downloads, once; the studio counts 18.00 back
    [told] = mails()
    assert told.body.startswith("18.00 EUR of your payment")
    assert f"download of photo {shop.photo.pk}" in told.body and f"download of photo {second.photo_id}" in told.body
    assert "43.00 EUR, 18.00 EUR refunded" in visible(owner.get("/studio/sales/"))
    assert "43.00 EUR, 18.00 EUR refunded" in visible(owner.get("/studio/"))
    assert sales_csv_row(owner, checkout_id)[3::9] == ["paid", "18.00"]
    # when: the owner refunds the item left, the print, back in stock
    page = owner.get(url)
    assert "Print A4, photo" in visible(page) and "25.00 EUR goes back to the buyer" in visible(page)
    assert post_refund(owner, page, checkout_id, refund_lines_on(page), restock_prints="on").status_code == 303
    confirmed(refunds_of(studio.org.pk, checkout_id)[-1], checkout_id)
    # then: the sale is refunded, the print is for sale again once, the last e-mail tells the rest
    assert status_of(studio, checkout_id) == "refunded" and shop.stock_quantity() == 10
    with tenant_context(studio.org.pk):
        assert StockRestock.objects.filter(product_id=shop.print.pk).count() == 1
    [told] = mails()
    assert told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert told.body.startswith("25.00 EUR of your payment") and "the rest of your order" in told.body
    assert sales_csv_row(owner, checkout_id)[3::9] == ["refunded", "43.00"]
    assert "Refund" not in refund_form_html(owner.get(url))


def test_a_dashboard_part_then_the_pages_item_refunds_add_up_to_the_payment(studio: StudioPeople) -> None:
    # given: a paid sale of a download (9.00) and an A4 print (25.00); 10.00 refunded in the
    # provider's dashboard
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    lines = lines_of(studio.org.pk, checkout_id)
    dashboard_refund(checkout_id, 1000, "dashboard-part")
    [told] = mails()
    assert told.body.startswith("10.00 EUR of your payment")
    owner = signed_in(studio.owner)
    url = f"/studio/sales/{checkout_id}/"
    page = owner.get(url)
    assert "at most what is left of the payment, 24.00 EUR" in visible(page)
    # when: the owner refunds the download from the page (a double click)
    action = f"/studio/sales/{checkout_id}/refund"
    form = {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": [str(lines["download"].pk)]}
    assert [owner.post(action, form).status_code for _ in range(2)] == [303, 303]
    assert "Refund of 9.00 EUR asked" in visible(owner.get(url))
    [download] = [r for r in refunds_of(studio.org.pk, checkout_id) if r.reason == "studio_partial"]
    confirmed(download, checkout_id)
    # then: the shopper is told 9.00; the list and CSV count 19.00 back
    [told] = mails()
    assert told.body.startswith("9.00 EUR of your payment")
    assert "34.00 EUR, 19.00 EUR refunded" in visible(owner.get("/studio/sales/"))
    assert sales_csv_row(owner, checkout_id)[3::9] == ["paid", "19.00"]
    # when: the owner refunds the item left, which gives back the 15.00 left, prints back in stock
    page = owner.get(url)
    assert "Print A4, photo" in visible(page) and "15.00 EUR goes back to the buyer" in visible(page)
    assert shop.stock_quantity() == 9
    done = owner.get(post_refund(owner, page, checkout_id, refund_lines_on(page), restock_prints="on")["Location"])
    assert "Refund of 15.00 EUR asked" in visible(done)
    confirmed(refunds_of(studio.org.pk, checkout_id)[-1], checkout_id)
    # then: the whole payment is back: refunded, the print for sale again once, the last e-mail
    # tells the 15.00 rest, the CSV counts 34.00
    assert status_of(studio, checkout_id) == "refunded" and shop.stock_quantity() == 10
    [told] = mails()
    assert told.body.startswith("15.00 EUR of your payment") and "the rest of your order" in told.body
    assert sales_csv_row(owner, checkout_id)[3::9] == ["refunded", "34.00"]
    assert "This order was refunded" in visible(shopper_page(studio, checkout_id))
