"""Writes for drop-in (DESIGN.md "Drop-in").

Selfies:
1. `selfie_register` (API or the attendee's own page) records the attendee (by e-mail, in the
   event; their row locked, so registrations of one attendee queue up), their consent to face
   matching, and a `pending` face holding the selfie's bytes, with its `dropin.face_enrol`
   outbox message, in one transaction. Registering again replaces the previous face (and
   deletes its matches).
2. `face_enrol` (its consumer) counts an attempt, calls the face backend outside any
   transaction, then records `enrolled` or `rejected` (dropping the bytes) only if the face is
   still pending (a conditional UPDATE is the arbiter between duplicate deliveries, a deletion
   and a replacement); what it enrolled for a face that is gone meanwhile is forgotten again.
   After DROPIN_MAX_ATTEMPTS runs that raised, the face is rejected.
3. `face_delete` deletes the face and its matches and writes `dropin.face_forget`, which makes
   the backend forget the face by its ref and by its subject (an enrolment whose answer was lost
   has no stored ref).

Photos:
1. Every new photo gets one `DropInJob` in its upload transaction (`dropin_job_enqueue`, unique
   per photo) with its `dropin.job_queued` message; the studio can ask for a photo by hand
   (`dropin_job_request`, deduplicated: an existing job is returned, a terminally failed one
   queued again).
2. `dropin_job_process` (its consumer) holds the fenced lease `dropin:job:<id>`; it marks the run
   started (fenced), has the backend analyse the photo once (`analyse_photo()`: one detection)
   and match the analysed faces against the event's enrolled faces, outside any transaction,
   then commits in ONE fenced transaction: the matches (unique per photo, attendee and face), one
   `new_photos` notification per matched attendee and photo, the studio's usage debit for the
   searches (ledger idempotency key `dropin:photo:<id>`: billed once), and the job's success. A
   stale worker cannot commit; a redelivered job finds it succeeded. The notifications (and the
   e-mail alerts they arm) wait for the photo's previews, its shop page: a photo not rendered
   yet is told of by its render (`photo_matches_notify`), serialised with the job on its row.
3. The same run indexes the photo's faces for "find me" (`apps/dropin/findme.py`) from the same
   analysis (`index_photo()`; Rekognition indexes them in the analysing call itself), storing its
   `PhotoIndex` and `PhotoFace` rows in the same fenced transaction, so a redelivered or stale
   run stores nothing twice. A photo indexed already (by `photo_faces_index`, the backfill of
   `manage.py dropin_index_photos`) is not indexed again; `PhotoIndex` (unique per photo and
   backend) is the arbiter. Faces a backend indexed for a run whose index was not stored (it
   failed, lost its lease, or the backfill stored its own first) are forgotten through
   `dropin.face_forget`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.urls import reverse
from django.utils import timezone

from apps.catalog import images, storage
from apps.catalog.errors import EventNotFound, PhotoAlreadyWithdrawn
from apps.catalog.errors import PhotoNotFound as PhotoNotFound
from apps.catalog.models import Event, Photo
from apps.core.locks import LockBusy, LockLost, StaleLeaseError, try_fenced_lock
from apps.core.problems import DomainError, InvalidInput, NotFound
from apps.dropin.faces import (
    Enrolled,
    FaceBackend,
    FaceRejected,
    IndexedFace,
    IndexTarget,
    PhotoAnalysis,
    SearchResult,
    UnreadableImage,
    get_backend,
)
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch, PhotoFace, PhotoIndex
from apps.dropin.selectors import enrolled_faces, face_subject, photo_indexed, photo_subject
from apps.ledger.models import LedgerAccount
from apps.ledger.services import RESERVED_CLIENT_PREFIX, EntryIn, ledger_entries_append
from apps.notifications.models import Attendee, Notification, PhotoAlert
from apps.notifications.photo_alerts import attendee_photo_alerts_set, photo_alerts_arm
from apps.notifications.services import attendee_name_problem
from apps.ops.killswitch import ensure_enabled
from apps.ops.models import Capability
from apps.outbox.requeue import requeue_stale
from apps.outbox.services import outbox_publish
from apps.tenancy.models import Organization
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.dropin")

TOPIC_FACE_ENROL = "dropin.face_enrol"
TOPIC_FACE_FORGET = "dropin.face_forget"
TOPIC_JOB_QUEUED = "dropin.job_queued"
SELFIE_FORMATS = ("JPEG", "PNG", "WEBP")
SELFIE_MAX_PIXELS = 40_000_000
USAGE_CLIENT_ID = f"{RESERVED_CLIENT_PREFIX}dropin"  # the API can neither create nor debit it


class ConsentRequired(InvalidInput):
    """A selfie was sent without the attendee's consent to face matching (`consent` must be
    true). Nothing was kept."""

    slug = "consent-required"
    title = "Consent to face matching is required"
    what_to_do = (
        "Ask the attendee whether their face may be matched against the event's photos, and send the "
        "selfie with `consent` true only if they agree."
    )


class SelfieRefused(InvalidInput):
    """The selfie's file is too large, or is not a readable JPEG, PNG or WebP image of a size
    Darkroom takes; `errors` names the field `image`, and `detail` says why. Nothing was kept."""

    slug = "selfie-refused"
    title = "The selfie cannot be used"
    what_to_do = "Send another photo of the face, as `detail` says: a smaller file, or a JPEG, PNG or WebP image."


class DropInUnavailable(DomainError):
    """Drop-in is switched off (DROPIN_ENABLED): no photo gets a job, so a selfie is not taken."""

    status_code = 503
    slug = "dropin-unavailable"
    title = "Drop-in is unavailable"
    when_it_happens = (
        "Face matching (drop-in) is switched off on this Darkroom, so selfies are not taken: no new photo "
        "would be matched to them. Nothing was kept."
    )
    what_to_do = (
        "Send the selfie again once face matching is switched on here; until then, the same request gets "
        "the same answer."
    )


class FaceNotFound(NotFound):
    """The attendee has no registered face: they sent no selfie, or it was deleted (another
    studio's attendees are answered the same way)."""

    slug = "face-not-found"
    title = "No registered face for this attendee"
    what_to_do = "Send the attendee's selfie first: POST /api/v1/events/{id}/selfies."


def collection_name(*, tenant_id: int, event_id: int) -> str:
    """The backend collection of an event's faces (Rekognition: `[a-zA-Z0-9_.-]+`)."""
    return f"{settings.DROPIN_REKOGNITION_COLLECTION_PREFIX}-t{tenant_id}-e{event_id}"


def photo_collection_name(*, tenant_id: int, event_id: int) -> str:
    """The backend collection of an event's photo faces, for "find me" (apart from its selfies)."""
    return f"{collection_name(tenant_id=tenant_id, event_id=event_id)}-photos"


def lease_name(job_id: int) -> str:
    return f"dropin:job:{job_id}"


# --- selfies --------------------------------------------------------------------------------


@transaction.atomic
def selfie_register(
    *,
    tenant_id: int,
    event_id: int,
    email: str,
    name: str = "",
    consent: bool,
    image: IO[bytes],
    image_size: int,
    actor_label: str,
    photo_alerts: bool = False,
) -> AttendeeFace:
    """Register the attendee's selfie for drop-in: the attendee (added to the event if new; their
    e-mail consent is left as it is), a pending face holding the selfie's bytes, and its enrol
    message. Replaces a face the attendee registered before. With `photo_alerts`, the attendee
    also asks to be e-mailed about new photos of them (without, a choice made before stays).
    Audited. Joins the caller's transaction. Raises DropInUnavailable (DROPIN_ENABLED is off:
    no selfie is kept for matching that never runs), ConsentRequired, InvalidInput (a name with
    control characters or text-direction overrides, `attendee_name_problem`), EventNotFound,
    SelfieRefused.
    """
    if not settings.DROPIN_ENABLED:
        raise DropInUnavailable("Drop-in is switched off: new photos are not matched to selfies for now.")
    if not consent:
        raise ConsentRequired(
            "Face matching needs the attendee's consent.", extra={"errors": {"consent": ["Must be true."]}}
        )
    if problem := attendee_name_problem(name.strip()):
        raise InvalidInput(f"Name: {problem}", extra={"errors": {"name": [problem]}})
    if not Event.objects.filter(tenant_id=tenant_id, pk=event_id).exists():
        raise EventNotFound(f"Event {event_id} does not exist in this studio.")
    if image_size > settings.DROPIN_MAX_SELFIE_BYTES:
        raise SelfieRefused(
            f"The selfie is {image_size} bytes; the limit is {settings.DROPIN_MAX_SELFIE_BYTES}.",
            extra={"errors": {"image": ["Too large."]}},
        )
    try:
        probed = images.probe_image(image, allowed_formats=SELFIE_FORMATS, max_pixels=SELFIE_MAX_PIXELS)
    except images.ImageRejected as exc:
        raise SelfieRefused(str(exc), extra={"errors": {"image": [str(exc)]}}) from exc
    email = email.strip().lower()
    Attendee.objects.bulk_create(
        [Attendee(tenant_id=tenant_id, event_id=event_id, email=email, name=name.strip())], ignore_conflicts=True
    )
    # Locked: a second registration of this attendee waits here, then replaces this one's face.
    # FOR NO KEY UPDATE: a drop-in run that holds their face's lock and inserts a match or a
    # notification referencing them (FOR KEY SHARE) is not held up, so it cannot deadlock with us.
    attendee = Attendee.objects.select_for_update(no_key=True).get(tenant_id=tenant_id, event_id=event_id, email=email)
    previous = AttendeeFace.objects.select_for_update().filter(tenant_id=tenant_id, attendee=attendee).first()
    if previous is not None:
        _face_remove(previous)
    now = timezone.now()
    image.seek(0)
    face = AttendeeFace.objects.create(
        tenant_id=tenant_id,
        attendee=attendee,
        event_id=event_id,
        backend=settings.DROPIN_FACE_BACKEND,
        selfie_image=image.read(settings.DROPIN_MAX_SELFIE_BYTES + 1),
        consent_recorded_at=now,
        queued_at=now,
    )
    _publish_enrol(face)
    if photo_alerts:
        attendee_photo_alerts_set(tenant_id=tenant_id, attendee_id=attendee.pk, enabled=True, actor_label=actor_label)
    audit_record(
        action="dropin.selfie_register",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="attendee",
        target_id=str(attendee.pk),
        data={"event_id": event_id, "face_id": face.pk, "replaced": previous is not None, "format": probed.format},
    )
    return face


def _publish_enrol(face: AttendeeFace) -> None:
    outbox_publish(
        topic=TOPIC_FACE_ENROL,
        tenant_id=face.tenant_id,
        aggregate_type="attendee_face",
        aggregate_id=face.pk,
        payload={"face_id": face.pk},
    )


def _publish_forget(*, face: AttendeeFace, refs: list[str]) -> None:
    """Make the face's backend forget it, by `refs` and by its subject, durably (assumes the
    caller's transaction)."""
    outbox_publish(
        topic=TOPIC_FACE_FORGET,
        tenant_id=face.tenant_id,
        aggregate_type="attendee_face",
        aggregate_id=face.pk,
        payload={
            "backend": face.backend,
            "collection": collection_name(tenant_id=face.tenant_id, event_id=face.event_id),
            "refs": refs,
            "subjects": [face_subject(face.pk)],
        },
    )


def _face_remove(face: AttendeeFace) -> None:
    """Delete a (locked) face with its matches and forget it. Assumes the caller's transaction."""
    FaceMatch.objects.filter(tenant_id=face.tenant_id, attendee_id=face.attendee_id).delete()
    _publish_forget(face=face, refs=[face.ref] if face.ref else [])
    face.delete()


@transaction.atomic
def face_delete(*, tenant_id: int, attendee_id: int, actor_label: str) -> None:
    """Delete the attendee's face (a pending one's selfie with it) and their matches; the backend
    forgets it (through the outbox), and an e-mail alert of new photos of them owed and not yet
    claimed is dropped (no "new photos of you" e-mail after they withdrew their consent; their
    choice of alerts stays for a later selfie). Audited. Joins the caller's transaction.
    Raises FaceNotFound.
    """
    face = AttendeeFace.objects.select_for_update().filter(tenant_id=tenant_id, attendee_id=attendee_id).first()
    if face is None:
        raise FaceNotFound(f"Attendee {attendee_id} has no registered face.")
    _face_remove(face)
    now = timezone.now()
    PhotoAlert.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id, due_at__isnull=False).exclude(
        claimed_until__gt=now
    ).update(due_at=None, attempts=0)
    audit_record(
        action="dropin.face_delete",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="attendee",
        target_id=str(attendee_id),
        data={"event_id": face.event_id},
    )


def face_enrol(*, face_id: int) -> str:
    """Enrol a pending face at its backend and record the outcome; returns "enrolled",
    "rejected" or "skipped" (gone, already decided, or replaced meanwhile).

    Runs outside any transaction (the backend call), in the face's tenant context (the consumer
    task's). Each run counts an attempt first; a face whose runs raised DROPIN_MAX_ATTEMPTS times
    is rejected, its selfie dropped. Raises FaceBackendUnavailable (passing: the task retries; the
    face stays pending), CapabilityDisabled (the drop-in kill switch is engaged).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("face_enrol calls the face backend; call it outside a transaction")
    ensure_enabled(Capability.DROPIN)
    with transaction.atomic(durable=True):
        face = _pending_locked(face_id)
        if face is None:
            return "skipped"
        if face.attempts >= settings.DROPIN_MAX_ATTEMPTS:
            _face_decide(face, status=AttendeeFace.Status.REJECTED, rejected_reason=_GAVE_UP)
            _publish_forget(face=face, refs=[])  # a lost answer may have enrolled it
            return str(AttendeeFace.Status.REJECTED)
        face.attempts += 1
        face.save(update_fields=["attempts"])
    image = bytes(face.selfie_image or b"")
    collection = collection_name(tenant_id=face.tenant_id, event_id=face.event_id)
    update: dict[str, Any]
    try:
        enrolled = get_backend(face.backend).enroll(collection=collection, subject=face_subject(face.pk), image=image)
    except FaceRejected as exc:
        update = {"status": AttendeeFace.Status.REJECTED, "rejected_reason": str(exc)[:300] or type(exc).__name__}
    else:
        update = {
            "status": AttendeeFace.Status.ENROLLED,
            "ref": enrolled.ref,
            "embedding": list(enrolled.embedding),
            "enrolled_at": timezone.now(),
        }
    with transaction.atomic(durable=True):
        current = _pending_locked(face.pk)
        if current is not None:
            _face_decide(current, **update)
        elif update.get("ref"):  # deleted, replaced or decided by another delivery meanwhile: undo ours
            _publish_forget(face=face, refs=[update["ref"]])
    if current is None:
        return "skipped"
    logger.info("drop-in face decided", extra={"face_id": face.pk, "status": update["status"]})
    return str(update["status"])


_GAVE_UP = "The selfie could not be processed; please send another."


def _pending_locked(face_id: int) -> AttendeeFace | None:
    return AttendeeFace.objects.select_for_update().filter(pk=face_id, status=AttendeeFace.Status.PENDING).first()


def _face_decide(face: AttendeeFace, **values: Any) -> None:
    """Record a locked pending face's outcome and drop its selfie bytes (inside a transaction)."""
    for name, value in values.items():
        setattr(face, name, value)
    face.selfie_image = None
    face.save(update_fields=[*values, "selfie_image"])


def face_forget(*, backend: str, collection: str, refs: list[str], subjects: list[str]) -> None:
    """Make a backend forget faces by ref and by subject; idempotent. Outside any transaction.
    Raises FaceBackendUnavailable (the task retries)."""
    get_backend(backend).forget(collection=collection, refs=refs, subjects=subjects)


@transaction.atomic(durable=True)
def faces_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> int:
    """Ask again to enrol faces still pending `older_than_seconds` after their message was
    queued (`apps.outbox.requeue`). Outermost transaction, system context."""
    rows = requeue_stale(
        AttendeeFace.objects.filter(status=AttendeeFace.Status.PENDING),
        queued_field="queued_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_enrol,
        flow="dropin_faces",
    )
    return len(rows)


# --- photo jobs -----------------------------------------------------------------------------

_ENQUEUE_SQL = """
INSERT INTO dropin_dropinjob AS j
       (tenant_id, photo_id, event_id, status, attempts, faces, matches, searches, backend, last_error,
        requested_by_label, created_at, queued_at)
VALUES (%(tenant)s, %(photo)s, %(event)s, 'queued', 0, 0, 0, 0, '', '', %(label)s, %(now)s, %(now)s)
ON CONFLICT (tenant_id, photo_id) DO NOTHING
RETURNING id
"""


def dropin_job_enqueue(*, photo: Photo, requested_by_label: str = "photo upload") -> int | None:
    """Create the photo's drop-in job with its message, once (a photo has at most one job).
    Returns the new job's id, or None when it had one or drop-in is off (DROPIN_ENABLED).
    Assumes the caller's transaction (the upload's).
    """
    if not settings.DROPIN_ENABLED:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            _ENQUEUE_SQL,
            {
                "tenant": photo.tenant_id,
                "photo": photo.pk,
                "event": photo.event_id,
                "label": requested_by_label[:200],
                "now": timezone.now(),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    _publish_job(tenant_id=photo.tenant_id, job_id=row[0])
    return int(row[0])


def _publish_job(*, tenant_id: int, job_id: int) -> None:
    outbox_publish(
        topic=TOPIC_JOB_QUEUED,
        tenant_id=tenant_id,
        aggregate_type="dropin_job",
        aggregate_id=job_id,
        payload={"job_id": job_id},
    )


@transaction.atomic
def dropin_job_request(*, tenant_id: int, photo_id: int, actor_label: str) -> tuple[DropInJob, bool]:
    """The studio asks for drop-in on a photo. Deduplicated: a photo without a job gets one, a
    terminally failed job is queued again (attempts reset), any other job is returned as it is.
    Returns (job, queued by this call). Audited when it queues. Raises PhotoNotFound,
    PhotoAlreadyWithdrawn (a withdrawn photo is never searched: nothing is queued or written).
    """
    photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
    if photo is None:
        raise PhotoNotFound(f"Photo {photo_id} does not exist in this studio.")
    if photo.withdrawn_at is not None:
        raise PhotoAlreadyWithdrawn(f"Photo {photo_id} is withdrawn: drop-in does not search it.")
    job = DropInJob.objects.select_for_update().filter(tenant_id=tenant_id, photo_id=photo_id).first()
    if job is not None and job.status != DropInJob.Status.FAILED:
        return job, False
    if job is None:
        now = timezone.now()
        job = DropInJob.objects.create(
            tenant_id=tenant_id,
            photo=photo,
            event_id=photo.event_id,
            requested_by_label=actor_label[:200],
            created_at=now,
            queued_at=now,
        )
    else:
        job.status, job.attempts, job.finished_at, job.queued_at = DropInJob.Status.QUEUED, 0, None, timezone.now()
        job.requested_by_label = actor_label[:200]
        job.save(update_fields=["status", "attempts", "finished_at", "queued_at", "requested_by_label"])
    _publish_job(tenant_id=tenant_id, job_id=job.pk)
    audit_record(
        action="dropin.job_request",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="photo",
        target_id=str(photo_id),
        data={"job_id": job.pk},
    )
    return job, True


@dataclass
class JobRunResult:
    job_id: int
    outcome: str  # succeeded, failed, skipped
    faces: int = 0
    matches: int = 0
    notified: int = 0
    searches: int = 0


def dropin_job_process(*, job_id: int) -> JobRunResult:
    """Run one drop-in job: find the photo's faces, match them against the event's enrolled
    faces, and commit matches, notifications, the usage debit and the job's success together.

    Runs outside any transaction, in the job's tenant context (the consumer task's). A job that
    already finished, or whose photo was withdrawn, is skipped; a run that raises counts as an
    attempt, and the job fails for good at the start of the run after DROPIN_MAX_ATTEMPTS (an
    unreadable photo fails at once).
    Raises CapabilityDisabled (the drop-in kill switch is engaged: nothing is done, the task
    retries), LockBusy (another worker runs it), StaleLeaseError / LockLost (the lease was lost:
    nothing of this run committed but the forgetting of faces its analysis indexed),
    FaceBackendUnavailable (passing; the task retries).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("dropin_job_process calls the face backend; call it outside a transaction")
    ensure_enabled(Capability.DROPIN)
    with try_fenced_lock(lease_name(job_id), ttl=settings.DROPIN_LEASE_TTL_SECONDS) as lease:
        if lease is None:
            raise LockBusy(f"another worker runs drop-in job {job_id}")
        with transaction.atomic(durable=True):
            lease.check()
            job = DropInJob.objects.select_for_update(of=("self",)).select_related("photo", "event").get(pk=job_id)
            if job.status in (DropInJob.Status.SUCCEEDED, DropInJob.Status.FAILED):
                return JobRunResult(job_id=job_id, outcome="skipped")
            if job.attempts >= settings.DROPIN_MAX_ATTEMPTS:
                _job_fail(job, f"gave up after {job.attempts} attempts; last error: {job.last_error}")
                return JobRunResult(job_id=job_id, outcome="failed")
            if job.photo.withdrawn_at is not None:  # taken down: nothing to find, nothing to bill
                job.status, job.finished_at, job.last_error = DropInJob.Status.SUCCEEDED, timezone.now(), ""
                job.save(update_fields=["status", "finished_at", "last_error"])
                return JobRunResult(job_id=job_id, outcome="skipped")
            job.status, job.attempts, job.started_at = DropInJob.Status.RUNNING, job.attempts + 1, timezone.now()
            job.backend = settings.DROPIN_FACE_BACKEND
            job.save(update_fields=["status", "attempts", "started_at", "backend"])
        analysis: PhotoAnalysis | None = None
        try:
            backend = get_backend(job.backend)
            plan = _plan(job)
            analysis = _analyse(job, plan, backend)
            result, indexed = _match_and_index(job, plan, backend, analysis)
            lease.extend()
            with transaction.atomic(durable=True):
                lease.check()
                run = _record(job=job, result=result, faces=plan.faces, indexed=indexed, analysis=analysis)
        except UnreadableImage as exc:
            _forget_unstored_now(job=job, analysis=analysis)
            with transaction.atomic(durable=True):
                lease.check()
                _job_fail(DropInJob.objects.select_for_update().get(pk=job_id), f"unreadable photo: {exc}")
            return JobRunResult(job_id=job_id, outcome="failed")
        except (StaleLeaseError, LockLost):
            _forget_unstored_now(job=job, analysis=analysis)
            raise  # not ours to record: a newer holder owns the job
        except Exception as exc:  # the search or the recording: the attempt is spent, say why
            _forget_unstored_now(job=job, analysis=analysis)
            with transaction.atomic(durable=True):
                lease.check()
                DropInJob.objects.filter(pk=job_id).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
    logger.info("drop-in job done", extra=run.__dict__)
    return run


@dataclass(frozen=True)
class _Plan:
    """What a run has to do: match against `enrolled` (the event's enrolled faces; `faces` maps
    their subjects to the rows; none: no match and nothing to bill) and/or index the photo for
    find me (`to_index`)."""

    faces: dict[str, AttendeeFace]
    enrolled: list[Enrolled]
    to_index: bool


def _plan(job: DropInJob) -> _Plan:
    faces = enrolled_faces(tenant_id=job.tenant_id, event_id=job.event_id, backend=job.backend)
    return _Plan(
        faces={enrolled.subject: face for face, enrolled in faces},
        enrolled=[enrolled for _, enrolled in faces],
        to_index=not photo_indexed(tenant_id=job.tenant_id, photo_id=job.photo_id, backend=job.backend),
    )


def _analyse(job: DropInJob, plan: _Plan, backend: FaceBackend) -> PhotoAnalysis | None:
    """The photo analysed once, for the match and (if it is to be indexed) for find me; None
    when there is nothing to do (the original is not even read). Outside any transaction.
    Raises UnreadableImage, FaceBackendUnavailable."""
    if not plan.enrolled and not plan.to_index:
        return None
    target = _index_target(tenant_id=job.tenant_id, event_id=job.event_id, photo_id=job.photo_id)
    return backend.analyse_photo(image=_original_bytes(job.photo), index=target if plan.to_index else None)


def _match_and_index(
    job: DropInJob, plan: _Plan, backend: FaceBackend, analysis: PhotoAnalysis | None
) -> tuple[SearchResult, list[IndexedFace] | None]:
    """Match the analysed faces against the enrolled ones (none enrolled: no search, nothing to
    bill) and take the faces to index (None: indexed already). Neither detects again. Outside
    any transaction. Raises FaceBackendUnavailable."""
    result = SearchResult(faces=[], matches=[], searches=0)
    if analysis is None:
        return result, None
    indexed = backend.index_photo(analysis=analysis) if plan.to_index else None
    if plan.enrolled:
        result = backend.match_photo(
            analysis=analysis,
            collection=collection_name(tenant_id=job.tenant_id, event_id=job.event_id),
            enrolled=plan.enrolled,
        )
    return result, indexed


def _index_target(*, tenant_id: int, event_id: int, photo_id: int) -> IndexTarget:
    return IndexTarget(
        collection=photo_collection_name(tenant_id=tenant_id, event_id=event_id), subject=photo_subject(photo_id)
    )


def _original_bytes(photo: Photo) -> bytes:
    """The photo's original. Raises UnreadableImage when it is missing from storage."""
    try:
        return storage.read_bytes(photo.original.name or "")
    except FileNotFoundError as exc:
        raise UnreadableImage("the original is missing from storage") from exc


def _record(
    *,
    job: DropInJob,
    result: SearchResult,
    faces: dict[str, AttendeeFace],
    indexed: list[IndexedFace] | None,
    analysis: PhotoAnalysis | None,
) -> JobRunResult:
    """Write a run's matches, notifications (and the e-mail alerts they arm), usage debit, photo
    index and success. Runs inside the fenced transaction. Matches of a face deleted since the
    search are dropped (its row is gone); what the backend indexed for a photo the backfill
    indexed meanwhile is forgotten; of a photo withdrawn meanwhile only the searches are billed.
    The matched attendees are told only once the photo's page is up (its previews ready);
    otherwise its render tells them (`photo_matches_notify`)."""
    # Only the job's row: locking the joined event and studio rows too would make any transaction
    # that writes a row of this studio (an audit row, an outbox row) wait on this one.
    job = DropInJob.objects.select_for_update(of=("self",)).select_related("event__tenant").get(pk=job.pk)
    now = timezone.now()
    # The photo's row, locked before anything referencing it is written: a withdrawal waits for
    # this transaction (its cleanup then removes what it wrote), or committed first, and then
    # nothing of the photo is recorded and the backend forgets what it indexed. The render's
    # success (FOR UPDATE) serialises with us too: it committed first, and the photo is ready
    # here, or it waits, then finds our matches and tells their attendees itself.
    withdrawn_at, derivatives = (
        Photo.objects.select_for_update(no_key=True)
        .filter(pk=job.photo_id)
        .values_list("withdrawn_at", "derivatives_status")
        .get()
    )
    if withdrawn_at is not None:
        _forget_unstored(job=job, analysis=analysis)
        result = SearchResult(faces=[], matches=[], searches=result.searches)
        indexed, faces = None, {}
    # The matched faces only, in id order (the event's other faces are none of this run's business,
    # and two runs lock the faces they share in the same order): a face_delete or a new selfie of
    # a matched attendee waits for this transaction, or has already removed the face.
    matched = sorted({faces[m.subject].pk for m in result.matches if m.subject in faces})
    live = set(
        AttendeeFace.objects.select_for_update()
        .filter(pk__in=matched)
        .order_by("pk")
        .values_list("attendee_id", flat=True)
    )
    matches = [
        FaceMatch(
            tenant_id=job.tenant_id,
            photo_id=job.photo_id,
            attendee_id=faces[m.subject].attendee_id,
            job=job,
            face_key=m.face_key[:100],
            similarity=min(1.0, max(0.0, m.similarity)),
            created_at=now,
        )
        for m in result.matches
        if m.subject in faces and faces[m.subject].attendee_id in live
    ]
    FaceMatch.objects.bulk_create(matches, ignore_conflicts=True)
    attendees = sorted({m.attendee_id for m in matches})
    if derivatives != Photo.DerivativesStatus.READY:
        attendees = []  # its page would 404: the render tells them once it is up
    _tell_new_photo(event=job.event, photo_id=job.photo_id, attendee_ids=attendees, now=now)
    if result.searches:
        _usage_debit(job=job, searches=result.searches)
    if indexed is not None and not _index_store(photo=job.photo, backend=job.backend, faces=indexed):
        _forget_unstored(job=job, analysis=analysis)
    job.status, job.finished_at, job.last_error = DropInJob.Status.SUCCEEDED, now, ""
    job.faces, job.searches = len(result.faces), result.searches
    job.matches = FaceMatch.objects.filter(tenant_id=job.tenant_id, photo_id=job.photo_id).count()
    job.save(update_fields=["status", "finished_at", "last_error", "faces", "searches", "matches"])
    return JobRunResult(
        job_id=job.pk,
        outcome="succeeded",
        faces=job.faces,
        matches=job.matches,
        notified=len(attendees),
        searches=result.searches,
    )


def _tell_new_photo(*, event: Event, photo_id: int, attendee_ids: list[int], now: datetime) -> None:
    """One `new_photos` notification per attendee about the photo (key `photo:<id>`: a second is
    ignored) and the e-mail alerts it arms. `event` has its tenant loaded. Assumes the caller's
    transaction, holding the photo's row."""
    if not attendee_ids:
        return
    # The notification opens the photo's page in the shop (it asks for the code of a protected event).
    photo_link = reverse(
        "shop:photo", kwargs={"studio_slug": event.tenant.slug, "event_slug": event.slug, "photo_id": photo_id}
    )
    Notification.objects.bulk_create(
        [
            Notification(
                tenant_id=event.tenant_id,
                attendee_id=attendee_id,
                kind=Notification.Kind.NEW_PHOTOS,
                dedupe_key=f"photo:{photo_id}",
                title="New photos of you",
                body=f"A new photo of you from {event.title} is in the gallery.",
                link=photo_link,
                created_at=now,
            )
            for attendee_id in attendee_ids
        ],
        ignore_conflicts=True,
    )
    photo_alerts_arm(tenant_id=event.tenant_id, attendee_ids=attendee_ids, now=now)


def photo_matches_notify(*, photo: Photo) -> int:
    """Tell the attendees matched in a photo so far that it is in the gallery, now that its
    previews are ready (its shop page is up); returns how many were told.

    Called by the render's success transaction (`apps.catalog.services.photo_generate_derivatives`)
    when the photo turns ready, holding its row FOR UPDATE and having checked it is not
    withdrawn. A drop-in run records its notifications under the same row lock only for a
    ready photo (`_record`), so whichever commits first, each match is told once. The matched
    attendees' faces are locked in id order, as `_record` does: an attendee whose face was deleted
    meanwhile is not told. Assumes the caller's transaction.
    """
    matched = set(
        FaceMatch.objects.filter(tenant_id=photo.tenant_id, photo_id=photo.pk).values_list("attendee_id", flat=True)
    )
    if not matched:
        return 0
    live = sorted(
        set(
            AttendeeFace.objects.select_for_update()
            .filter(tenant_id=photo.tenant_id, attendee_id__in=matched)
            .order_by("pk")
            .values_list("attendee_id", flat=True)
        )
    )
    event = Event.objects.select_related("tenant").get(tenant_id=photo.tenant_id, pk=photo.event_id)
    _tell_new_photo(event=event, photo_id=photo.pk, attendee_ids=live, now=timezone.now())
    return len(live)


_INDEX_SQL = """
INSERT INTO dropin_photoindex AS i (tenant_id, photo_id, event_id, backend, faces, indexed_at)
VALUES (%(tenant)s, %(photo)s, %(event)s, %(backend)s, %(faces)s, %(now)s)
ON CONFLICT (tenant_id, photo_id, backend) DO NOTHING
RETURNING id
"""


def _index_store(*, photo: Photo, backend: str, faces: list[IndexedFace]) -> bool:
    """Store a photo's indexed faces, unless it is indexed by `backend` already (then nothing is
    written: the first writer's faces stand). Returns whether this call stored them. Assumes the
    caller's transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            _INDEX_SQL,
            {
                "tenant": photo.tenant_id,
                "photo": photo.pk,
                "event": photo.event_id,
                "backend": backend,
                "faces": len(faces),
                "now": timezone.now(),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return False
    PhotoFace.objects.bulk_create(
        [
            PhotoFace(
                tenant_id=photo.tenant_id,
                index_id=row[0],
                photo_id=photo.pk,
                event_id=photo.event_id,
                backend=backend,
                face_key=face.face_key[:100],
                ref=face.ref[:100],
                descriptor=face.descriptor,
            )
            for face in faces
        ]
    )
    return True


def photo_faces_index(*, tenant_id: int, photo_id: int) -> int | None:
    """Index a photo's faces for find me with the configured backend, unless it is indexed by
    it already (the backfill of photos processed before find me existed, and photos without a
    drop-in job). Returns the number of faces stored, or None when it was indexed already
    (before or meanwhile: a concurrent job's index stands).

    A withdrawn photo is not indexed (None). Runs outside any transaction (the backend call), in
    the photo's tenant context. Raises PhotoNotFound, UnreadableImage (the original is missing or not an image),
    FaceBackendUnavailable, CapabilityDisabled (the drop-in kill switch is engaged).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("photo_faces_index calls the face backend; call it outside a transaction")
    ensure_enabled(Capability.DROPIN)
    backend = get_backend()
    photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
    if photo is None:
        raise PhotoNotFound(f"Photo {photo_id} does not exist in this studio.")
    if photo.withdrawn_at is not None or photo_indexed(tenant_id=tenant_id, photo_id=photo_id, backend=backend.name):
        return None
    analysis = backend.analyse_photo(
        image=_original_bytes(photo),
        index=_index_target(tenant_id=tenant_id, event_id=photo.event_id, photo_id=photo_id),
    )
    faces = backend.index_photo(analysis=analysis)
    with transaction.atomic(durable=True):
        stored = not _photo_withdrawn_locked(photo_id) and _index_store(photo=photo, backend=backend.name, faces=faces)
        if not stored:
            _forget_photo_faces(photo=photo, backend=backend.name, analysis=analysis)
    return len(faces) if stored else None


def _photo_withdrawn_locked(photo_id: int) -> bool:
    """Lock the photo's row (FOR NO KEY UPDATE: a withdrawal's FOR UPDATE waits for it, inserts
    that reference the photo do not) and say whether it is withdrawn. Assumes a transaction."""
    withdrawn_at = (
        Photo.objects.select_for_update(no_key=True).filter(pk=photo_id).values_list("withdrawn_at", flat=True).get()
    )
    return withdrawn_at is not None


@transaction.atomic(durable=True)
def photo_faces_unindex(*, tenant_id: int, photo_id: int) -> dict[str, int]:
    """Remove a withdrawn photo from drop-in and find me (`apps.catalog.withdrawal`): its matches,
    the attendees' `new_photos` notifications about it, its `PhotoFace` and `PhotoIndex` rows,
    and, for each backend that holds its faces, a `dropin.face_forget` message naming their refs
    in the event's photo collection. Outermost transaction, in the photo's tenant context;
    idempotent (a second call finds nothing). Returns how many rows of each kind it deleted."""
    photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
    if photo is None:
        raise PhotoNotFound(f"Photo {photo_id} does not exist in this studio.")
    refs_by_backend: dict[str, list[str]] = {}
    for backend, ref in PhotoFace.objects.filter(tenant_id=tenant_id, photo_id=photo_id).values_list("backend", "ref"):
        if ref:
            refs_by_backend.setdefault(backend, []).append(ref)
    collection = photo_collection_name(tenant_id=tenant_id, event_id=photo.event_id)
    for backend, refs in sorted(refs_by_backend.items()):
        outbox_publish(
            topic=TOPIC_FACE_FORGET,
            tenant_id=tenant_id,
            aggregate_type="photo",
            aggregate_id=photo_id,
            payload={"backend": backend, "collection": collection, "refs": refs, "subjects": []},
        )
    return {
        "matches": FaceMatch.objects.filter(tenant_id=tenant_id, photo_id=photo_id).delete()[0],
        "notifications": Notification.objects.filter(
            tenant_id=tenant_id, kind=Notification.Kind.NEW_PHOTOS, dedupe_key=f"photo:{photo_id}"
        ).delete()[0],
        "faces": PhotoFace.objects.filter(tenant_id=tenant_id, photo_id=photo_id).delete()[0],
        "indexes": PhotoIndex.objects.filter(tenant_id=tenant_id, photo_id=photo_id).delete()[0],
    }


def _forget_unstored(*, job: DropInJob, analysis: PhotoAnalysis | None) -> None:
    """Have the backend forget what it indexed while analysing for this run, unless stored: the
    run failed before its index committed, or the backfill's index stands. A retried run
    indexes the photo again, so without this the photo collection would keep faces that no
    stored row names. Assumes the caller's (fenced) transaction."""
    if analysis is not None:
        _forget_photo_faces(photo=job.photo, backend=job.backend, analysis=analysis)


def _forget_unstored_now(*, job: DropInJob, analysis: PhotoAnalysis | None) -> None:
    """`_forget_unstored` for a run that records nothing, in a transaction of its own and unfenced:
    the refs its analysis stored are its own (fresh; no other run stores them), so they are
    forgotten even when its lease was lost, before or while it handles its failure. Outside any
    transaction."""
    if analysis is not None and analysis.stored_refs():
        with transaction.atomic(durable=True):
            _forget_unstored(job=job, analysis=analysis)


def _forget_photo_faces(*, photo: Photo, backend: str, analysis: PhotoAnalysis) -> None:
    """Publish `dropin.face_forget` for the refs the backend stored while analysing the photo that
    no `PhotoFace` row names (nothing for backends that store nothing). Assumes a transaction."""
    refs = analysis.stored_refs()
    if not refs or analysis.index is None:
        return
    kept = set(
        PhotoFace.objects.filter(
            tenant_id=photo.tenant_id, photo_id=photo.pk, backend=backend, ref__in=refs
        ).values_list("ref", flat=True)
    )
    unstored = [ref for ref in refs if ref not in kept]
    if unstored:
        outbox_publish(
            topic=TOPIC_FACE_FORGET,
            tenant_id=photo.tenant_id,
            aggregate_type="photo",
            aggregate_id=photo.pk,
            payload={"backend": backend, "collection": analysis.index.collection, "refs": unstored, "subjects": []},
        )


def _usage_debit(*, job: DropInJob, searches: int) -> None:
    """Bill the studio for the job's face searches, once per photo (ledger idempotency key).
    Inside the fenced transaction."""
    if settings.DROPIN_SEARCH_PRICE_MINOR <= 0:
        return
    tenant = Organization.objects.get(pk=job.tenant_id)
    ledger_entries_append(
        tenant=tenant,
        entries=[
            EntryIn(
                account_id=usage_account(tenant=tenant).pk,
                amount_minor=searches * settings.DROPIN_SEARCH_PRICE_MINOR,
                currency=settings.DROPIN_USAGE_CURRENCY,
                idempotency_key=f"dropin:photo:{job.photo_id}",
                reference=f"drop-in face search: photo {job.photo_id}, {searches} searches",
            )
        ],
    )


def usage_account(*, tenant: Organization) -> LedgerAccount:
    """The studio's drop-in usage account, created on first use. One per studio and currency
    (a partial unique constraint; concurrent first uses serialise on a transaction-level advisory
    lock). Its reserved client id keeps it out of the ledger API's reach. Assumes a transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('dropin-usage-account'), %s)", [tenant.pk])
    account, _ = LedgerAccount.objects.get_or_create(
        tenant=tenant,
        kind=LedgerAccount.Kind.USAGE,
        client_id=USAGE_CLIENT_ID,
        currency=settings.DROPIN_USAGE_CURRENCY,
    )
    return account


def _job_fail(job: DropInJob, error: str) -> None:
    job.status, job.finished_at, job.last_error = DropInJob.Status.FAILED, timezone.now(), error[:2000]
    job.save(update_fields=["status", "finished_at", "last_error"])
    logger.warning("drop-in job failed for good", extra={"job_id": job.pk, "error": error[:500]})


@transaction.atomic(durable=True)
def jobs_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> int:
    """Ask again for jobs still queued or running `older_than_seconds` after their message was
    queued (`apps.outbox.requeue`: the broker lost it, or a worker died and its retries ran
    out). Harmless for a job that is only slow: the new message finds the lease busy or the job
    finished. Outermost transaction, system context."""
    rows = requeue_stale(
        DropInJob.objects.filter(status__in=[DropInJob.Status.QUEUED, DropInJob.Status.RUNNING]),
        queued_field="queued_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=lambda job: _publish_job(tenant_id=job.tenant_id, job_id=job.pk),
        flow="dropin_jobs",
    )
    return len(rows)
