"""Drop-in: attendees' registered faces, one processing job per new photo, and its matches.

* `AttendeeFace`: an attendee's selfie, with their recorded consent to face matching. One per
  attendee (registering again replaces it). `pending`: the selfie's bytes wait on the row
  (`selfie_image`, so a rolled-back registration leaves nothing behind) for the enrol task (the
  backend call, e.g. Rekognition IndexFaces, never runs inside a transaction); `enrolled`: the
  backend holds what it needs to recognise the face (`embedding` for the local backend, `ref`,
  the Rekognition FaceId) and the bytes are gone; `rejected`: no single face in it, or it could
  not be processed in DROPIN_MAX_ATTEMPTS tries (the bytes are gone too). Deleting a face deletes
  its matches and forgets it at the backend, durably (an outbox message).
* `DropInJob`: one per photo (the job's identity). queued → running → succeeded, or
  failed (terminal, after DROPIN_MAX_ATTEMPTS runs that raised). One worker at a time runs a
  job (fenced lease `dropin:job:<id>`); its results commit in one fenced transaction.
* `FaceMatch`: one per (photo, attendee, face in the photo). The attendee's `new_photos`
  notification is one per (attendee, photo) (`Notification.dedupe_key` "photo:<id>").
* `PhotoIndex` and `PhotoFace` ("find me", `apps/dropin/findme.py`): a photo's faces, stored so a
  shopper's selfie can be searched against the photos of an event. `PhotoIndex` is one per
  (photo, backend) and says "this photo's faces are indexed by that backend" (also when it has
  none), `PhotoFace` one per (photo, backend, face): the backend's `ref` (Rekognition FaceId in
  the event's photo collection; fake: the identity) and, for the local backend, the 128-d
  descriptor as 512 bytes of little-endian float32. Written by the drop-in job in its fenced
  success transaction, or by `manage.py dropin_index_photos` for photos processed before.

Every table is tenant-scoped with RLS forced (migration 0001); every unique key starts with
`tenant_id`.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import Exact
from django.utils import timezone

from apps.dropin.faces.base import DESCRIPTOR_BYTES
from apps.tenancy.models import TenantModel


class AttendeeFace(TenantModel):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending (waiting to be enrolled)"
        ENROLLED = "enrolled", "Enrolled"
        REJECTED = "rejected", "Rejected (no single face)"

    attendee = models.ForeignKey("notifications.Attendee", on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    backend = models.CharField(max_length=20)  # the face backend that enrols (enrolled) it
    selfie_image = models.BinaryField(null=True, blank=True, editable=False)  # only while pending
    attempts = models.IntegerField(default=0)  # enrolment runs started
    ref = models.CharField(max_length=100, blank=True, default="")
    embedding = ArrayField(models.FloatField(), default=list, blank=True)
    rejected_reason = models.CharField(max_length=300, blank=True, default="")
    consent_recorded_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(default=timezone.now)  # its enrol message, last written
    enrolled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "attendee"], name="dropin_face_one_per_attendee"),
            models.CheckConstraint(condition=~models.Q(backend=""), name="dropin_face_backend_named"),
            models.CheckConstraint(condition=models.Q(attempts__gte=0), name="dropin_face_attempts"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "enrolled", "rejected"]), name="dropin_face_status"
            ),
            # A pending face has its selfie; a decided one has none left (biometric data is kept
            # only as long as it is needed).
            models.CheckConstraint(
                condition=models.Q(status="pending", selfie_image__isnull=False)
                | (~models.Q(status="pending") & models.Q(selfie_image__isnull=True)),
                name="dropin_face_selfie_only_while_pending",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="enrolled") | models.Q(enrolled_at__isnull=False),
                name="dropin_face_enrolled_at",
            ),
        ]
        indexes = [
            # The matcher's read: an event's faces enrolled by the configured backend.
            models.Index(fields=["event", "backend"], name="dropin_face_event", condition=models.Q(status="enrolled")),
            models.Index(fields=["queued_at"], name="dropin_face_pending", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"face of attendee {self.attendee_id} ({self.backend})"


class DropInJob(TenantModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (terminal)"

    photo = models.ForeignKey("catalog.Photo", on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.IntegerField(default=0)  # runs started
    faces = models.IntegerField(default=0)  # faces found in the photo
    matches = models.IntegerField(default=0)  # (attendee, face) matches recorded
    searches = models.IntegerField(default=0)  # billable face searches, debited once
    backend = models.CharField(max_length=20, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    requested_by_label = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(default=timezone.now)  # its outbox message, last written
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "photo"], name="dropin_job_one_per_photo"),
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "succeeded", "failed"]), name="dropin_job_status"
            ),
            models.CheckConstraint(
                condition=models.Q(attempts__gte=0, faces__gte=0, matches__gte=0, searches__gte=0),
                name="dropin_job_counts",
            ),
            models.CheckConstraint(
                condition=~models.Q(status__in=["succeeded", "failed"]) | models.Q(finished_at__isnull=False),
                name="dropin_job_finished_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="running") | models.Q(started_at__isnull=False),
                name="dropin_job_started_at",
            ),
        ]
        indexes = [
            # The lost-message sweep and the metrics: unfinished jobs by age.
            models.Index(
                fields=["queued_at"],
                name="dropin_job_unfinished",
                condition=models.Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"drop-in job {self.pk} of photo {self.photo_id} ({self.status})"


class FaceMatch(TenantModel):
    photo = models.ForeignKey("catalog.Photo", on_delete=models.PROTECT, related_name="+")
    attendee = models.ForeignKey("notifications.Attendee", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(DropInJob, on_delete=models.PROTECT, related_name="face_matches")
    face_key = models.CharField(max_length=100)  # which face of the photo (the backend's stable key)
    similarity = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "face matches"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "photo", "attendee", "face_key"], name="dropin_match_once_per_face"
            ),
            models.CheckConstraint(
                condition=models.Q(similarity__gte=0, similarity__lte=1), name="dropin_match_similarity_range"
            ),
        ]
        indexes = [models.Index(fields=["attendee", "photo"], name="dropin_match_by_attendee")]

    def __str__(self) -> str:
        return f"attendee {self.attendee_id} in photo {self.photo_id} ({self.face_key})"


class PhotoIndex(TenantModel):
    photo = models.ForeignKey("catalog.Photo", on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=20)
    faces = models.IntegerField(default=0)
    indexed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "photo indexes"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "photo", "backend"], name="dropin_photoindex_once"),
            # The target of PhotoFace's same-tenant foreign key.
            models.UniqueConstraint(
                fields=["tenant", "id", "photo", "event", "backend"], name="dropin_photoindex_tenant_id"
            ),
            models.CheckConstraint(condition=~models.Q(backend=""), name="dropin_photoindex_backend_named"),
            models.CheckConstraint(condition=models.Q(faces__gte=0), name="dropin_photoindex_faces"),
        ]
        indexes = [models.Index(fields=["tenant", "event", "backend"], name="dropin_photoindex_event")]

    def __str__(self) -> str:
        return f"faces of photo {self.photo_id} ({self.backend}: {self.faces})"


class PhotoFace(TenantModel):
    index = models.ForeignKey(PhotoIndex, on_delete=models.CASCADE, related_name="+")
    photo = models.ForeignKey("catalog.Photo", on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=20)
    face_key = models.CharField(max_length=100)  # which face of the photo (the backend's stable key)
    ref = models.CharField(max_length=100, blank=True, default="")
    descriptor = models.BinaryField(default=bytes, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "photo", "backend", "face_key"], name="dropin_photoface_once"),
            models.CheckConstraint(condition=~models.Q(backend=""), name="dropin_photoface_backend_named"),
            models.CheckConstraint(
                condition=models.Q(Exact(Length("descriptor"), 0))
                | models.Q(Exact(Length("descriptor"), DESCRIPTOR_BYTES)),
                name="dropin_photoface_descriptor_size",
            ),
            models.CheckConstraint(
                condition=~models.Q(backend="local") | models.Q(Exact(Length("descriptor"), DESCRIPTOR_BYTES)),
                name="dropin_photoface_local_has_descriptor",
            ),
        ]
        # The search's read: an event's faces indexed by the configured backend, in id order.
        indexes = [models.Index(fields=["tenant", "event", "backend", "id"], name="dropin_photoface_event")]

    def __str__(self) -> str:
        return f"face {self.face_key} of photo {self.photo_id} ({self.backend})"
