"""The studio dashboard in a real browser: a photographer signs in, finds their studio's events,
is refused a page their role may not see, and signs out."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

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
