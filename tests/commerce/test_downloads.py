"""Entitlements and signed downloads: no entitlement, no original."""

from __future__ import annotations

import re

import pytest
from django.core import signing
from django.core.files.storage import default_storage
from django.test import Client

from apps.commerce.models import Entitlement
from apps.commerce.order_links import order_token
from apps.commerce.selectors import DOWNLOAD_SALT, download_token
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_refunded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def buy(tenant, shop, *lines, email="ann@example.test") -> str:
    checkout_id = post_checkout(tenant.client(), checkout_body(shop, *lines, email=email)).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    return checkout_id


def path_of(url: str) -> str:
    return url.split("testserver", 1)[1]


def original_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def test_paid_download_is_listed_and_its_signed_link_streams_the_original(tenant_a, shop_a):
    buy(tenant_a, shop_a, {"product": shop_a.download.pk})
    # when: the shopper's entitlements are listed (email match is case-insensitive)
    listed = tenant_a.client().get("/api/v1/entitlements", {"email": "ANN@example.test"})
    assert listed.status_code == 200
    [entitlement] = listed.json()["results"]
    assert (entitlement["scope"], entitlement["photo"]) == ("photo", shop_a.photo.pk)
    [link] = entitlement["downloads"]
    # then: the link streams the original as an attachment, never cached
    response = Client().get(path_of(link["url"]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Cache-Control"] == "private, no-store"
    body = b"".join(response.streaming_content)
    assert body == original_bytes(shop_a.photo.original.name)


def test_bulk_entitlement_covers_every_photo_of_its_event(tenant_a, shop_a):
    other_photo, _ = shop_a.add_photo()
    buy(tenant_a, shop_a, {"product": shop_a.bulk.pk})
    [entitlement] = tenant_a.client().get("/api/v1/entitlements", {"email": "ann@example.test"}).json()["results"]
    assert entitlement["scope"] == "event"
    assert sorted(d["photo"] for d in entitlement["downloads"]) == sorted([shop_a.photo.pk, other_photo.pk])
    for download in entitlement["downloads"]:
        assert Client().get(path_of(download["url"])).status_code == 200


def test_a_bulk_entitlements_downloads_page_through_every_photo_beyond_one_page(tenant_a, shop_a, settings):
    # given: an event of 5 photos bought whole, and pages of 2 links
    settings.SHOP_DOWNLOADS_PER_PAGE = 2
    photos = sorted([shop_a.photo.pk, *(shop_a.add_photo()[0].pk for _ in range(4))])
    checkout_id = buy(tenant_a, shop_a, {"product": shop_a.bulk.pk})
    api = tenant_a.client()
    # when: the API pages through them two at a time
    seen: list[int] = []
    for offset in range(0, 6, 2):
        query = {"email": "ann@example.test", "downloads_offset": offset, "downloads_limit": 2}
        [entitlement] = api.get("/api/v1/entitlements", query).json()["results"]
        assert entitlement["downloads_count"] == 5
        seen += [d["photo"] for d in entitlement["downloads"]]
    # then: every photo once, in id order; a limit over the maximum is refused
    assert seen == photos
    too_many = {"email": "ann@example.test", "downloads_limit": settings.ENTITLEMENT_BULK_DOWNLOADS_LIMIT + 1}
    assert api.get("/api/v1/entitlements", too_many).status_code == 400
    # and: the shop's order page pages through them too
    browser = Client()
    token = order_token(tenant_id=tenant_a.org.pk, checkout_id=checkout_id)
    base = browser.get(f"/s/{tenant_a.org.slug}/orders/{token}")["Location"]  # the receipt's order link
    shown: list[int] = []
    for page in (1, 2, 3, 4):  # 4 is past the end: the last page again
        body = browser.get(base, {"downloads_page": page}).content.decode()
        assert "Your downloads (5 photos)" in body
        shown += [int(n) for n in re.findall(r"Download photo (\d+) \(original\)", body)]
    assert shown == [*photos, photos[-1]]


def test_no_entitlement_no_original(tenant_a, tenant_b, shop_a):
    # given: a paid download of one photo, and another photo of the same event
    other_photo, _ = shop_a.add_photo()
    buy(tenant_a, shop_a, {"product": shop_a.download.pk})
    with tenant_context(tenant_a.org.pk):
        entitlement = Entitlement.objects.get()
    good = download_token(entitlement=entitlement, photo_id=shop_a.photo.pk)
    assert Client().get(f"/downloads/{good}").status_code == 200
    # then: a validly signed token for a photo the entitlement does not cover is a 404
    uncovered = Client().get(f"/downloads/{download_token(entitlement=entitlement, photo_id=other_photo.pk)}")
    assert (uncovered.status_code, uncovered["Content-Type"]) == (404, "application/problem+json")
    # and: a tampered token is a 403
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert Client().get(f"/downloads/{tampered}").status_code == 403
    # and: a token signed with another salt or key is a 403
    forged = signing.TimestampSigner(salt="something-else").sign_object(
        {"t": tenant_a.org.pk, "e": entitlement.pk, "p": shop_a.photo.pk}
    )
    assert Client().get(f"/downloads/{forged}").status_code == 403
    # and: another studio's key lists nothing for that email
    assert tenant_b.client().get("/api/v1/entitlements", {"email": "ann@example.test"}).json()["count"] == 0


class _PastSigner(signing.TimestampSigner):
    def timestamp(self) -> str:
        import time

        return signing.b62_encode(int(time.time()) - 10 * 24 * 3600)


def test_expired_link_is_refused(tenant_a, shop_a):
    buy(tenant_a, shop_a, {"product": shop_a.download.pk})
    with tenant_context(tenant_a.org.pk):
        entitlement = Entitlement.objects.get()
    old = _PastSigner(salt=DOWNLOAD_SALT).sign_object(
        {"t": tenant_a.org.pk, "e": entitlement.pk, "p": shop_a.photo.pk}, compress=True
    )
    response = Client().get(f"/downloads/{old}")
    assert (response.status_code, response.json()["type"]) == (403, "/problems/download-link-invalid")


BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_refused_download_link_is_a_page_in_a_browser_and_a_problem_elsewhere(tenant_a, shop_a):
    # given: a paid download's link, tampered with, expired, and one for a photo it does not cover
    other_photo, _ = shop_a.add_photo()
    buy(tenant_a, shop_a, {"product": shop_a.download.pk})
    with tenant_context(tenant_a.org.pk):
        entitlement = Entitlement.objects.get()
    good = download_token(entitlement=entitlement, photo_id=shop_a.photo.pk)
    signed = {"t": tenant_a.org.pk, "e": entitlement.pk, "p": shop_a.photo.pk}
    links = {
        "tampered": (f"/downloads/{good[:-3]}{'BBB' if good.endswith('AAA') else 'AAA'}", 403, "not valid"),
        "expired": (f"/downloads/{_PastSigner(salt=DOWNLOAD_SALT).sign_object(signed)}", 403, "has expired"),
        "uncovered": (f"/downloads/{download_token(entitlement=entitlement, photo_id=other_photo.pk)}", 404, ""),
    }
    for name, (url, status, says) in links.items():
        # when: a browser opens the link (from the receipt), and a client that does not ask for HTML
        shown = Client().get(url, **BROWSER)
        answered = Client().get(url)
        # then: the browser gets a page with the same status; the other client the problem
        assert (shown.status_code, shown["Content-Type"]) == (status, "text/html; charset=utf-8"), name
        assert says in shown.content.decode(), name
        assert (answered.status_code, answered["Content-Type"]) == (status, "application/problem+json"), name


def test_refund_revokes_the_entitlement_and_its_links_stop_working(tenant_a, shop_a):
    checkout_id = buy(tenant_a, shop_a, {"product": shop_a.download.pk})
    [entitlement] = tenant_a.client().get("/api/v1/entitlements", {"email": "ann@example.test"}).json()["results"]
    url = path_of(entitlement["downloads"][0]["url"])
    assert Client().get(url).status_code == 200
    deliver([sandbox_refunded(checkout_id, 900)])
    drain_outbox()
    assert Client().get(url).status_code == 404
    assert tenant_a.client().get("/api/v1/entitlements", {"email": "ann@example.test"}).json()["count"] == 0


def test_unpaid_checkout_grants_nothing(tenant_a, shop_a):
    post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}))
    drain_outbox()
    assert tenant_a.client().get("/api/v1/entitlements", {"email": "ann@example.test"}).json()["count"] == 0


def test_entitlement_list_needs_a_valid_email(tenant_a):
    assert tenant_a.client().get("/api/v1/entitlements").status_code == 400
    assert tenant_a.client().get("/api/v1/entitlements", {"email": "nope"}).status_code == 400
