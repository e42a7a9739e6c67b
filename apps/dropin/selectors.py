"""Reads for drop-in: an event's enrolled faces, a photo's job and matches, job statistics."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Min, Q
from django.utils import timezone

from apps.dropin.faces import Enrolled
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch


def face_subject(face_id: int) -> str:
    """The subject name a face is enrolled under at the backend (Rekognition's ExternalImageId)."""
    return f"face-{face_id}"


def enrolled_faces(*, tenant_id: int, event_id: int, backend: str) -> list[tuple[AttendeeFace, Enrolled]]:
    """The event's registered faces that `backend` enrolled (a face enrolled by another backend
    cannot be compared), each with what the backend's search takes."""
    faces = (
        AttendeeFace.objects.filter(
            tenant_id=tenant_id, event_id=event_id, backend=backend, status=AttendeeFace.Status.ENROLLED
        )
        .defer("selfie_image")
        .order_by("pk")
    )
    return [
        (face, Enrolled(subject=face_subject(face.pk), ref=face.ref, embedding=tuple(face.embedding))) for face in faces
    ]


def job_of_photo(*, tenant_id: int, photo_id: int) -> DropInJob | None:
    return DropInJob.objects.filter(tenant_id=tenant_id, photo_id=photo_id).first()


def matches_of_photo(*, tenant_id: int, photo_id: int) -> list[FaceMatch]:
    return list(FaceMatch.objects.filter(tenant_id=tenant_id, photo_id=photo_id).order_by("face_key", "attendee_id"))


def face_of_attendee(*, tenant_id: int, attendee_id: int) -> AttendeeFace | None:
    return AttendeeFace.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id).defer("selfie_image").first()


@dataclass(frozen=True)
class JobStats:
    by_status: dict[str, int]
    oldest_unfinished_age_seconds: float


def job_stats() -> JobStats:
    """Jobs per status and the age of the oldest unfinished one (visible rows only: call it in
    the system context for every tenant)."""
    counts = dict(DropInJob.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    oldest = DropInJob.objects.filter(Q(status="queued") | Q(status="running")).aggregate(t=Min("queued_at"))["t"]
    age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
    return JobStats(
        by_status={status: int(counts.get(status, 0)) for status in DropInJob.Status.values},
        oldest_unfinished_age_seconds=age,
    )
