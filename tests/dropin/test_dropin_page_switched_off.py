"""The attendee's drop-in page with drop-in switched off (DARKROOM_DROPIN_ENABLED): no selfie is
taken then (503 `dropin-unavailable`), so the page offers no selfie form and says drop-in is off
for now; a face registered before can still be deleted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace
from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import tenant_context
from tests.dropin.helpers import an_event, enrolled_face

pytestmark = pytest.mark.django_db(transaction=True)

OFF = "Drop-in is off for now"


def page_of(org: Any, attendee_id: int) -> str:
    return f"/attendee/{attendee_token(tenant_id=org.pk, attendee_id=attendee_id)}/drop-in"


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def offers_a_selfie_form(page: str) -> bool:
    return 'name="image"' in page or "Register my selfie" in page or "Replace my selfie" in page


def test_with_drop_in_off_the_page_offers_no_selfie_form_and_says_so(tenant_a: Any) -> None:
    # given: an attendee of an event, and drop-in switched off
    event = an_event(tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        bob = Attendee.objects.create(tenant=tenant_a.org, event=event, email="bob@example.com")
    with override_settings(DROPIN_ENABLED=False):
        # when: they open their drop-in page
        page = text(Client().get(page_of(tenant_a.org, bob.pk)))
        # then: it says drop-in is off for now and offers no selfie form (nor Find me, off too)
        assert OFF in page and not offers_a_selfie_form(page)
        assert "Find me in" not in page
        # when: a selfie is sent anyway (a form opened before drop-in was switched off)
        selfie = {"image": SimpleUploadedFile("me.png", fake_face_image(["bob"])), "consent": "yes"}
        response = Client().post(page_of(tenant_a.org, bob.pk), selfie)
        # then: 503, the page says so again without the form, and nothing is kept
        refused = text(response)
        assert response.status_code == 503 and OFF in refused and not offers_a_selfie_form(refused)
    with tenant_context(tenant_a.org.pk):
        assert not AttendeeFace.objects.exists()
    # and: switched on, the same page offers the form
    page = text(Client().get(page_of(tenant_a.org, bob.pk)))
    assert OFF not in page and offers_a_selfie_form(page)


@override_settings(DROPIN_ENABLED=False)
def test_with_drop_in_off_a_face_registered_before_can_still_be_deleted(tenant_a: Any) -> None:
    # given: Ann registered her face before drop-in was switched off
    event = an_event(tenant_a.org)
    with override_settings(DROPIN_ENABLED=True):
        ann = enrolled_face(tenant_a.org, event, "ann")
    # when: she opens her page, then deletes her face
    page = text(Client().get(page_of(tenant_a.org, ann.attendee_id)))
    response = Client().post(page_of(tenant_a.org, ann.attendee_id) + "/delete")
    # then: the page showed her face with its delete button, and the face is gone
    assert OFF in page and "Delete my face" in page and not offers_a_selfie_form(page)
    assert response.status_code == 303
    with tenant_context(tenant_a.org.pk):
        assert not AttendeeFace.objects.exists()
