"""The attendee's drop-in page offers e-mail alerts of new photos in one place (QA walkthrough: it
offered them twice, a button of their own and a box in the selfie form), whatever the attendee's
state: with or without a registered face, alerts off, on or unsubscribed, in a signed-out
browser or one signed in to a studio. The one offer turns them on."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.notifications.models import Attendee
from apps.notifications.photo_alerts import attendee_photo_alerts_set
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import tenant_context
from tests.dropin.helpers import an_event, enrolled_face
from tests.web.shop.html_tree import Element, parse

pytestmark = pytest.mark.django_db(transaction=True)  # a face is enrolled outside any transaction


def alert_forms(page: Element) -> dict[str, list[Element]]:
    """The page's forms that change e-mail alerts, by what they ask: "on" (a button or a box
    turning them on) or "off" (stopping them)."""
    found: dict[str, list[Element]] = {"on": [], "off": []}
    for form in page.find_all("form"):
        for field in form.find_all("input", name="alerts"):
            found["off" if field.attrs.get("value") == "off" else "on"].append(form)
    return found


def posted_fields(form: Element) -> dict[str, str]:
    """What submitting the form sends (hidden fields and ticked-or-not boxes ticked)."""
    return {field.attrs["name"]: field.attrs.get("value", "on") for field in form.find_all("input", name=True)}


def an_attendee_in(org: Any, *, with_face: bool, alerts: str) -> Attendee:
    """An attendee of a new event, with an enrolled face or none, and alerts "off", "on" or
    "unsubscribed" (from every e-mail about the event)."""
    event = an_event(org)
    if with_face:
        attendee_id = enrolled_face(org, event, "ann", email="ann@example.com").attendee_id
    else:
        with tenant_context(org.pk):
            attendee_id = Attendee.objects.create(tenant=org, event=event, email="ann@example.com").pk
    with tenant_context(org.pk):
        if alerts == "on":
            attendee_photo_alerts_set(tenant_id=org.pk, attendee_id=attendee_id, enabled=True, actor_label="test")
        elif alerts == "unsubscribed":
            Attendee.objects.filter(pk=attendee_id).update(unsubscribed_at=timezone.now())
        return Attendee.objects.get(pk=attendee_id)


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
@pytest.mark.parametrize("alerts", ["off", "on", "unsubscribed"])
@pytest.mark.parametrize("with_face", [False, True], ids=["no-selfie", "selfie"])
def test_e_mail_alerts_are_offered_in_one_place(tenant_a: Any, with_face: bool, alerts: str, signed_in: bool) -> None:
    # given: an attendee in that state, and a browser signed out or signed in to a studio
    ann = an_attendee_in(tenant_a.org, with_face=with_face, alerts=alerts)
    browser = Client()
    if signed_in:
        browser.force_login(tenant_a.owner)
    page_url = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)}/drop-in"
    # when: they open their drop-in page
    response = browser.get(page_url)
    assert response.status_code == 200
    page = parse(response.content.decode())
    forms = alert_forms(page)
    # then: one section about e-mail alerts, and the selfie form asks nothing about them
    assert [h.text for h in page.find_all("h2")].count("E-mail alerts") == 1
    selfie_form = page.find("form", enctype="multipart/form-data")
    assert selfie_form is not None and not selfie_form.find_all("input", name="alerts")
    assert page.text.count("E-mail me at") + page.text.count("e-mail me at") <= 1
    # and: what it offers follows their state, each once
    offered = {"off": (1, 0), "on": (0, 1), "unsubscribed": (0, 0)}[alerts]
    assert (len(forms["on"]), len(forms["off"])) == offered
    if alerts == "unsubscribed":
        assert page.text.count("You unsubscribed from e-mails about this event") == 1
    if alerts != "off":
        return
    # when: they use the one offer
    [offer] = forms["on"]
    turned_on = browser.post(offer.attrs["action"], posted_fields(offer))
    # then: their alerts are on, and the page offers to stop them, once
    assert turned_on.status_code == 303
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.get(pk=ann.pk).photo_alerts_at is not None
    after = alert_forms(parse(browser.get(page_url).content.decode()))
    assert (len(after["on"]), len(after["off"])) == (0, 1)
