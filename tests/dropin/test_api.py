"""The drop-in API: selfie registration (multipart, Idempotency-Key), face status and deletion,
the manual photo request (deduplicated), problem bodies for bad input, tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.utils import timezone

from apps.catalog.models import Photo
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace, DropInJob
from apps.dropin.services import TOPIC_JOB_QUEUED, dropin_job_process, face_enrol
from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.dropin.helpers import an_event, enrolled_face, photo_of
from tests.factories.catalog import PhotoFactory

pytestmark = pytest.mark.django_db(transaction=True)


def post_selfie(client: Any, event_id: int, *, key: str | None = None, **fields: Any) -> Any:
    body = {"email": "ann@example.com", "consent": "true", **fields}
    if "image" not in fields:
        body["image"] = SimpleUploadedFile("me.png", fake_face_image(["ann"]), content_type="image/png")
    return client.post(
        f"/api/v1/events/{event_id}/selfies", body, format="multipart", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4())
    )


def faces() -> list[AttendeeFace]:
    with system_context("test: faces"):
        return list(AttendeeFace.objects.order_by("pk"))


def test_a_studio_registers_a_selfie_and_follows_it_until_enrolled(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    api = tenant_a.client()
    # when: the selfie is posted, and the same request retried
    first = post_selfie(api, event.pk, key="selfie-1")
    replay = post_selfie(api, event.pk, key="selfie-1")
    # then: 202 pending, replayed byte for byte, one face
    assert first.status_code == 202, first.content
    assert first.json()["status"] == "pending"
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    assert len(faces()) == 1
    attendee_id = first.json()["attendee_id"]
    with tenant_context(tenant_a.org.pk):
        face_enrol(face_id=faces()[0].pk)
    status = api.get(f"/api/v1/attendees/{attendee_id}/face")
    assert status.status_code == 200 and status.json()["status"] == "enrolled"
    # when: it is deleted
    gone = api.delete(f"/api/v1/attendees/{attendee_id}/face", HTTP_IDEMPOTENCY_KEY="del-1")
    assert gone.status_code == 204
    assert faces() == []
    missing = api.get(f"/api/v1/attendees/{attendee_id}/face")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"consent": "false"}, "consent"),
        ({"email": "not-an-email"}, "email"),
        ({"image": SimpleUploadedFile("x.png", b"not an image", content_type="image/png")}, "image"),
        ({"surprise": "field"}, "surprise"),
    ],
)
def test_bad_selfie_requests_get_a_problem_and_write_nothing(tenant_a: Any, fields: dict[str, Any], field: str) -> None:
    event = an_event(tenant_a.org)
    response = post_selfie(tenant_a.client(), event.pk, **fields)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in str(response.json())
    assert faces() == []


@override_settings(DROPIN_ENABLED=False)
def test_with_drop_in_switched_off_no_selfie_is_taken(tenant_a: Any) -> None:
    # given: drop-in switched off (no photo gets a job, so no selfie would ever be matched)
    event = an_event(tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        attendee = Attendee.objects.create(tenant=tenant_a.org, event=event, email="bob@example.com")
    page = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=attendee.pk)}/drop-in"
    # when: the studio posts a selfie, and an attendee on their page
    response = post_selfie(tenant_a.client(), event.pk)
    selfie = SimpleUploadedFile("me.png", fake_face_image(["bob"]))
    on_page = Client().post(page, {"image": selfie, "consent": "yes"})
    # then: both are told so, and no face is kept (no biometric data for nothing)
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("/dropin-unavailable")
    assert on_page.status_code == 503 and "switched off" in on_page.content.decode()
    assert faces() == []


def test_a_selfie_for_another_studios_event_is_not_found(tenant_a: Any, tenant_b: Any) -> None:
    event = an_event(tenant_b.org)
    response = post_selfie(tenant_a.client(), event.pk)
    assert response.status_code == 404
    assert faces() == []


def test_a_selfie_needs_an_idempotency_key(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    response = tenant_a.client().post(
        f"/api/v1/events/{event.pk}/selfies",
        {"email": "a@example.com", "consent": "true", "image": SimpleUploadedFile("a.png", fake_face_image(["a"]))},
        format="multipart",
    )
    assert response.status_code == 400
    assert faces() == []


def test_the_studio_runs_drop_in_on_a_photo_by_hand_once(tenant_a: Any, tenant_b: Any) -> None:
    # given: a photo made before drop-in (no job), and Ann registered
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    with tenant_context(tenant_a.org.pk):
        photo = PhotoFactory(event=event)
    api = tenant_a.client()
    path = f"/api/v1/photos/{photo.pk}/dropin"
    assert api.get(path).status_code == 404
    # when: the studio asks twice
    first = api.post(path, HTTP_IDEMPOTENCY_KEY="run-1")
    second = api.post(path, HTTP_IDEMPOTENCY_KEY="run-2")
    # then: one job; the second request returns it
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"] and first.json()["status"] == "queued"
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=first.json()["id"]).outcome == "succeeded"
    done = api.get(path).json()
    assert (done["status"], done["faces"], done["face_matches"]) == ("succeeded", 0, [])
    # and another studio cannot see or request it
    assert tenant_b.client().get(path).status_code == 404
    assert tenant_b.client().post(path, HTTP_IDEMPOTENCY_KEY="x").status_code == 404
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    with tenant_context(tenant_a.org.pk):
        dropin_job_process(job_id=job_id)
    with system_context("test"):
        from apps.dropin.models import DropInJob

        photo_id = DropInJob.objects.get(pk=job_id).photo_id
    matched = api.get(f"/api/v1/photos/{photo_id}/dropin").json()["face_matches"]
    assert matched == [{"attendee_id": ann.attendee_id, "face_key": "fake-0-ann", "similarity": 1.0}]


def test_an_attendee_registers_and_deletes_their_own_selfie_on_their_page(tenant_a: Any) -> None:
    # given: an attendee the studio registered, with their signed link
    event = an_event(tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        attendee = Attendee.objects.create(tenant=tenant_a.org, event=event, email="ann@example.com")
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=attendee.pk)
    page = f"/attendee/{token}/drop-in"
    browser = Client()
    assert "Register my selfie" in browser.get(page).content.decode()
    # when: they post without consent, then with it
    selfie = fake_face_image(["ann"])
    refused = browser.post(page, {"image": SimpleUploadedFile("me.png", selfie)})
    assert refused.status_code == 400 and "consent" in refused.content.decode().lower()
    assert faces() == []
    done = browser.post(page, {"image": SimpleUploadedFile("me.png", selfie), "consent": "yes"})
    assert done.status_code == 303
    (face,) = faces()
    assert (face.attendee_id, face.status) == (attendee.pk, "pending")
    assert "being registered" in browser.get(page).content.decode()
    # when: they delete it
    assert browser.post(f"{page}/delete").status_code == 303
    assert faces() == []
    # and a forged token gets a problem, not a page
    assert browser.get(f"/attendee/{token}x/drop-in").status_code in (400, 403, 404)


def test_drop_in_on_a_withdrawn_photo_is_refused_and_writes_nothing(tenant_a: Any) -> None:
    # given: a photo without a job (made before drop-in), then withdrawn by the studio
    event = an_event(tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        photo = PhotoFactory(event=event)
    with system_context("test: withdraw"):
        Photo.objects.filter(pk=photo.pk).update(withdrawn_at=timezone.now(), withdrawn_reason="taken down")
    # when: the studio asks for drop-in on it
    response = tenant_a.client().post(f"/api/v1/photos/{photo.pk}/dropin", HTTP_IDEMPOTENCY_KEY="run-1")
    # then: a problem saying why, and no job, message or audit row
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("/photo-already-withdrawn")
    with system_context("test"):
        assert not DropInJob.objects.exists()
        assert not OutboxMessage.objects.filter(topic=TOPIC_JOB_QUEUED).exists()
        assert not AuditLog.objects.filter(action="dropin.job_request").exists()
