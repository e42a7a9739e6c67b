"""The studio dashboard in a real browser: a photographer signs in, finds their studio's events,
is refused a page their role may not see, and signs out; an owner withdraws a photo and the shop
stops showing it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.factories.commerce import Shop
from tests.web.studio.conftest import StudioPeople, new_event, new_photo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]


def test_a_photographer_signs_in_browses_events_is_refused_sales_and_signs_out(
    page: Page, studio: StudioPeople
) -> None:
    # given: a studio with an event of two photos, and its photographer
    event = new_event(studio.org, title="Harbour Regatta")
    new_photo(event)
    new_photo(event)
    # when: the photographer opens the dashboard without being signed in
    page.goto("/studio/")
    # then: the sign-in page, which sends them on to the overview
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to your studio")
    page.get_by_label("Username").fill(studio.photographer.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(studio.org.name)
    nav = page.get_by_role("navigation", name="Studio")
    expect(nav.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("region", name="Latest events").get_by_role("link", name="Harbour Regatta")).to_be_visible()
    # and: the photographer's menu has no Sales
    expect(nav.get_by_role("link", name="Sales")).to_have_count(0)
    # when: they open the events and the event
    nav.get_by_role("link", name="Events").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Events")
    page.get_by_role("link", name="Harbour Regatta").click()
    # then: the event's page lists its photos
    expect(page.get_by_role("heading", level=1)).to_have_text("Harbour Regatta")
    expect(page.get_by_role("heading", level=2, name="Photos (2)")).to_be_visible()
    # when: they open the sales page by its address
    response = page.goto("/studio/sales/")
    # then: the forbidden page says why, and leads back to the overview
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("you are photographer here")
    expect(page.get_by_role("link", name="Back to the studio overview")).to_be_visible()
    # when: they sign out
    page.get_by_role("button", name="Sign out").click()
    # then: the sign-in page, and the dashboard is closed to this browser again
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to your studio")
    page.goto("/studio/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to your studio")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_the_owner_withdraws_a_photo_and_the_shop_stops_showing_it(
    page: Page, studio: StudioPeople, shop: Shop
) -> None:
    # given: the studio's shop shows its one photo
    gallery = f"/s/{studio.org.slug}/{shop.event.slug}/"
    page.goto(gallery)
    expect(page.locator(f'a[href$="/photos/{shop.photo.pk}/"]').first).to_be_visible()
    # when: the owner signs in, opens the event and withdraws the photo with a reason
    page.goto("/studio/login/")
    page.get_by_label("Username").fill(studio.owner.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/studio/events/{shop.event.pk}/")
    page.get_by_role("link", name="Withdraw…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Withdraw photo #{shop.photo.pk}")
    page.get_by_label("Reason").fill("The runner asked us to take it down")
    page.get_by_role("button", name=f"Withdraw photo #{shop.photo.pk}").click()
    # then: back on the event page, which says it is withdrawn and offers no withdraw link
    expect(page.get_by_text("The runner asked us to take it down")).to_be_visible()
    expect(page.get_by_role("link", name="Withdraw…")).to_have_count(0)
    # and: the shop's gallery no longer shows it, and its page is gone
    page.goto(gallery)
    expect(page.locator(f'a[href$="/photos/{shop.photo.pk}/"]')).to_have_count(0)
    response = page.goto(f"{gallery}photos/{shop.photo.pk}/")
    assert response is not None and response.status == 404
