"""An attendee's drop-in page takes a bounded number of selfies per signed link: each is an
enrolment at the face backend (paid, with Rekognition)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace
from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import system_context, tenant_context
from tests.dropin.helpers import an_event
from tests.fixtures import forget_rate_limit_windows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    forget_rate_limit_windows("attendee:dropin:")
    yield
    forget_rate_limit_windows("attendee:dropin:")


def page_of(tenant: Any, email: str) -> str:
    event = an_event(tenant.org)
    with tenant_context(tenant.org.pk):
        attendee = Attendee.objects.create(tenant=tenant.org, event=event, email=email)
    return f"/attendee/{attendee_token(tenant_id=tenant.org.pk, attendee_id=attendee.pk)}/drop-in"


def selfie() -> SimpleUploadedFile:
    return SimpleUploadedFile("me.png", fake_face_image(["ann"]), content_type="image/png")


def face_count() -> int:
    with system_context("test: faces"):
        return AttendeeFace.objects.count()


def test_selfies_beyond_the_links_rate_are_refused_and_write_nothing(tenant_a: Any, settings: Any) -> None:
    # given: two selfies an hour per link, and two attendees
    settings.DROPIN_SELFIE_PAGE_RATE = "2/hour"
    ann, bob = page_of(tenant_a, "ann@example.com"), page_of(tenant_a, "bob@example.com")
    browser = Client()
    # when: Ann sends three selfies
    sent = [browser.post(ann, {"image": selfie(), "consent": "yes"}) for _ in range(3)]
    # then: the third is refused with a wait, on her page, and changes nothing
    assert [r.status_code for r in sent] == [303, 303, 429]
    assert int(sent[2]["Retry-After"]) > 0
    assert "Too many selfies" in sent[2].content.decode()
    assert face_count() == 1  # the second replaced the first; the third wrote nothing
    # and: her page still opens, and Bob's link has its own budget
    assert browser.get(ann).status_code == 200
    assert browser.post(bob, {"image": selfie(), "consent": "yes"}).status_code == 303
    assert face_count() == 2


def test_the_limit_follows_the_rate_limit_switch(tenant_a: Any, settings: Any) -> None:
    settings.DROPIN_SELFIE_PAGE_RATE = "1/hour"
    settings.RATE_LIMIT_ENABLED = False
    page = page_of(tenant_a, "ann@example.com")
    statuses = [Client().post(page, {"image": selfie(), "consent": "yes"}).status_code for _ in range(3)]
    assert statuses == [303, 303, 303]


def test_a_selfie_without_consent_is_refused_in_the_attendees_words(tenant_a: Any) -> None:
    page = page_of(tenant_a, "cy@example.com")
    refused = Client().post(page, {"image": selfie()})
    assert refused.status_code == 400 and "Tick the box to agree to face matching" in refused.content.decode()
    assert face_count() == 0
