"""Shared set-up of the drop-in tests (fake face backend: faces are read from image metadata)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from apps.catalog import storage
from apps.catalog.models import Event, Photo
from apps.catalog.services import photo_generate_derivatives
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch
from apps.dropin.services import (
    TOPIC_FACE_FORGET,
    dropin_job_enqueue,
    face_enrol,
    face_forget,
    selfie_register,
)
from apps.notifications.models import Notification
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.factories.catalog import EventFactory, PhotoFactory


def an_event(org: Organization) -> Event:
    with tenant_context(org.pk):
        return EventFactory(tenant=org)


def enrolled_face(org: Organization, event: Event, identity: str, *, email: str | None = None) -> AttendeeFace:
    """Register `identity`'s selfie and run the enrol consumer, as the worker would."""
    image = fake_face_image([identity])
    with tenant_context(org.pk):
        face = selfie_register(
            tenant_id=org.pk,
            event_id=event.pk,
            email=email or f"{identity}@example.com",
            name=identity.title(),
            consent=True,
            image=io.BytesIO(image),
            image_size=len(image),
            actor_label="test",
        )
        assert face_enrol(face_id=face.pk) == "enrolled"
        return AttendeeFace.objects.get(pk=face.pk)


def photo_of(
    org: Organization, event: Event, identities: Sequence[str], *, rendered: bool = False
) -> tuple[Photo, int]:
    """A photo of the event showing `identities`, and its drop-in job (created as an upload would);
    `rendered`: its previews rendered already (its shop page is up, so drop-in tells attendees)."""
    image = fake_face_image(list(identities), size=(96, 64), fmt="JPEG")
    with tenant_context(org.pk):
        photo = PhotoFactory(event=event, image_width=96, image_height=64)
        storage.write_exact(name=photo.original.name, data=image)
        from django.db import transaction

        with transaction.atomic():
            job_id = dropin_job_enqueue(photo=photo)
    assert job_id is not None
    if rendered:
        assert render(photo) == "ready"
    return photo, job_id


def render(photo: Photo) -> str:
    """The render worker's run on the photo (its previews; "ready", or "failed" for an unreadable original)."""
    return photo_generate_derivatives(tenant_id=photo.tenant_id, photo_id=photo.pk)


def job(job_id: int) -> DropInJob:
    with system_context("test: jobs"):
        return DropInJob.objects.get(pk=job_id)


def matches(org: Organization) -> list[tuple[int, int, str]]:
    with system_context("test: matches"):
        return list(
            FaceMatch.objects.filter(tenant=org)
            .order_by("photo_id", "attendee_id", "face_key")
            .values_list("photo_id", "attendee_id", "face_key")
        )


def new_photo_notifications(org: Organization) -> list[tuple[int, str]]:
    with system_context("test: notifications"):
        return list(
            Notification.objects.filter(tenant=org, kind="new_photos")
            .order_by("attendee_id", "dedupe_key")
            .values_list("attendee_id", "dedupe_key")
        )


def outbox_payloads(topic: str) -> list[dict[str, Any]]:
    with system_context("test: outbox"):
        return list(
            OutboxMessage.objects.filter(topic=topic).order_by("created_at", "id").values_list("payload", flat=True)
        )


def run_forgets() -> None:
    """Run every `dropin.face_forget` message's consumer (idempotent, so repeats are fine)."""
    for payload in outbox_payloads(TOPIC_FACE_FORGET):
        face_forget(**payload)
