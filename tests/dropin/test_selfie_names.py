"""The drop-in selfie API registers the attendee too, with their name: the name follows the rule
of the attendees API (no control characters, no text-direction overrides; it greets them in
photo alerts), refused with a 400 problem naming `name`, and nothing is written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace
from apps.notifications.models import Attendee
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context
from tests.dropin.helpers import an_event

pytestmark = pytest.mark.django_db(transaction=True)


def post_selfie(client: Any, event_id: int, name: str) -> Any:
    body = {
        "email": "eve@example.com",
        "name": name,
        "consent": "true",
        "image": SimpleUploadedFile("me.png", fake_face_image(["eve"]), content_type="image/png"),
    }
    return client.post(
        f"/api/v1/events/{event_id}/selfies", body, format="multipart", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )


def written() -> tuple[int, int, int]:
    with system_context("test: drop-in rows"):
        return (
            Attendee.objects.count(),
            AttendeeFace.objects.count(),
            OutboxMessage.objects.filter(topic="dropin.face_enrol").count(),
        )


@pytest.mark.parametrize("name", ["line1\nline2\u202e", "Eve \u202eevil", "Eve\x07"])
def test_a_selfie_with_a_name_holding_control_or_direction_characters_is_refused(tenant_a: Any, name: str) -> None:
    # given: an event
    event = an_event(tenant_a.org)
    # when: a selfie is registered for an attendee with that name
    response = post_selfie(tenant_a.client(), event.pk, name)
    # then: a 400 problem naming the name field; no attendee, face or enrolment message
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {
        "name": ["Control characters (including text-direction overrides) are not allowed."]
    }
    assert written() == (0, 0, 0)


def test_a_selfie_with_a_plain_name_registers_the_attendee_by_it(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    response = post_selfie(tenant_a.client(), event.pk, " \u00c9ve Ex\u00adample ")
    assert response.status_code == 202, response.content
    with system_context("test: attendees"):
        assert list(Attendee.objects.values_list("name", flat=True)) == ["\u00c9ve Ex\u00adample"]
    assert written() == (1, 1, 1)
