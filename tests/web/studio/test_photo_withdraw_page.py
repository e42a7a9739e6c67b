"""The withdrawal confirmation page says who loses the photo: the paid orders of all the event's
photos (bulk), which stop including it, besides the buyers of the photo alone, who keep it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.commerce.models import Entitlement
from apps.commerce.selectors import event_bulk_orders_count
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture by name
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, new_photo, signed_in, sold, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def withdraw_page(studio: StudioPeople, event_id: int, photo_id: int) -> str:
    page = signed_in(studio.owner).get(f"/studio/events/{event_id}/photos/{photo_id}/withdraw")
    assert page.status_code == 200
    return text(page)


def test_the_page_counts_the_paid_bulk_orders_that_lose_the_photo(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: an event of two photos, bought whole by two paid orders and by one order never paid,
    # and the photo's download bought alone; and another event's bulk order
    shop = make_shop(org=studio.org)
    new_photo(shop.event)
    sold(studio, shop, {"product": shop.bulk.pk})
    sold(studio, shop, {"product": shop.bulk.pk})
    sold(studio, shop, {"product": shop.download.pk})
    sold(studio, shop, {"product": shop.bulk.pk}, pay=False)
    elsewhere = make_shop(org=studio.org)
    sold(studio, elsewhere, {"product": elsewhere.bulk.pk})
    # when: the owner opens the withdrawal of the photo
    page = withdraw_page(studio, shop.event.pk, shop.photo.pk)
    # then: it says that the two paid bulk orders will no longer include it
    assert "2 paid orders of all the photos of this event will no longer include it" in page
    assert "1 buyer bought this photo alone" in page
    assert "Nobody has bought all the photos" not in page
    # and: the count is the studio's own (RLS): asked as another studio, it is none
    with tenant_context(studio.org.pk):
        assert event_bulk_orders_count(tenant_id=studio.org.pk, event_id=shop.event.pk) == 2
    with tenant_context(other_studio.org.pk):
        assert event_bulk_orders_count(tenant_id=other_studio.org.pk, event_id=shop.event.pk) == 0
        assert event_bulk_orders_count(tenant_id=studio.org.pk, event_id=shop.event.pk) == 0


def test_a_refunded_bulk_order_no_longer_counts(studio: StudioPeople) -> None:
    # given: one paid bulk order, then refunded (its entitlement revoked)
    shop = make_shop(org=studio.org)
    sold(studio, shop, {"product": shop.bulk.pk})
    assert "1 paid order of all the photos of this event" in withdraw_page(studio, shop.event.pk, shop.photo.pk)
    with tenant_context(studio.org.pk):
        Entitlement.objects.filter(event=shop.event, scope=Entitlement.Scope.EVENT).update(revoked_at=timezone.now())
    # then: the page says nobody's order loses the photo
    page = withdraw_page(studio, shop.event.pk, shop.photo.pk)
    assert "Nobody has bought all the photos of this event, so no order loses it." in page
    assert "Nobody bought this photo alone." in page
