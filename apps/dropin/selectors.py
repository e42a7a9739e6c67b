"""Reads for drop-in: an event's enrolled faces, a photo's job and matches, job statistics, and
for find me: which photos are indexed, and an event's indexed photo faces in batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Count, Exists, Min, OuterRef, Q
from django.utils import timezone

from apps.catalog.models import Photo
from apps.dropin.faces import Enrolled, IndexedBatch
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch, PhotoFace, PhotoIndex

logger = logging.getLogger("darkroom.dropin")


def face_subject(face_id: int) -> str:
    """The subject name a face is enrolled under at the backend (Rekognition's ExternalImageId)."""
    return f"face-{face_id}"


def photo_subject(photo_id: int) -> str:
    """The subject a photo's faces are indexed under (Rekognition's ExternalImageId)."""
    return f"photo-{photo_id}"


def photo_of_subject(subject: str) -> int | None:
    """The photo id of `photo_subject()`'s answer; None for anything else."""
    prefix, _, number = subject.partition("-")
    return int(number) if prefix == "photo" and number.isdigit() else None


def photo_indexed(*, tenant_id: int, photo_id: int, backend: str) -> bool:
    return PhotoIndex.objects.filter(tenant_id=tenant_id, photo_id=photo_id, backend=backend).exists()


def indexed_face_batches(
    *, tenant_id: int, event_id: int, backend: str, batch_size: int, max_faces: int
) -> Iterator[IndexedBatch]:
    """The event's faces indexed by `backend` in photos whose derivatives are ready, at most
    `max_faces` of them (the oldest first), `batch_size` per query (keyset on the face id, so
    memory stays bounded). Each batch is read when the consumer asks for it."""
    last_id, remaining = 0, max_faces
    while remaining > 0:
        rows = list(
            PhotoFace.objects.filter(
                tenant_id=tenant_id,
                event_id=event_id,
                backend=backend,
                pk__gt=last_id,
                photo__event_id=event_id,
                photo__derivatives_status=Photo.DerivativesStatus.READY,
                photo__withdrawn_at__isnull=True,
            )
            .order_by("pk")
            .values_list("pk", "photo_id", "ref", "descriptor")[: min(batch_size, remaining)]
        )
        if not rows:
            return
        yield IndexedBatch(
            subjects=[photo_subject(photo_id) for _, photo_id, _, _ in rows],
            refs=[ref for _, _, ref, _ in rows],
            descriptors=b"".join(bytes(descriptor) for _, _, _, descriptor in rows),
        )
        last_id, remaining = rows[-1][0], remaining - len(rows)
        if len(rows) < batch_size:
            return
    # The bound is reached (FINDME_MAX_FACES): newer photos' faces are not compared.
    logger.warning("find-me face bound reached", extra={"event_id": event_id, "max_faces": max_faces})


def photos_to_index(
    *, backend: str, after_id: int, limit: int, tenant_id: int | None = None, event_id: int | None = None
) -> list[tuple[int, int]]:
    """(photo id, tenant id) of photos not indexed by `backend` yet, by id after `after_id`
    (the backfill's keyset). Visible rows only: call it in the system context for every tenant."""
    photos = Photo.objects.filter(pk__gt=after_id, withdrawn_at__isnull=True).exclude(
        Exists(PhotoIndex.objects.filter(tenant_id=OuterRef("tenant_id"), photo_id=OuterRef("pk"), backend=backend))
    )
    if tenant_id is not None:
        photos = photos.filter(tenant_id=tenant_id)
    if event_id is not None:
        photos = photos.filter(event_id=event_id)
    return list(photos.order_by("pk").values_list("pk", "tenant_id")[:limit])


def enrolled_faces(*, tenant_id: int, event_id: int, backend: str) -> list[tuple[AttendeeFace, Enrolled]]:
    """The event's registered faces that `backend` enrolled (a face enrolled by another backend
    cannot be compared), each with what the backend's `match_photo()` takes."""
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
