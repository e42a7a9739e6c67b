"""Celery tasks of drop-in (thin: call a service), on the `dropin` queue (its own worker: face
detection is CPU-heavy and must not hold up payments or announcements).

* `dropin.process_job` (`dropin.job_queued`): one photo's face search and its matches, and the
  indexing of its faces for "find me" (`apps/dropin/findme.py`), committed together. A busy or
  lost lease (another worker runs it, or a dead holder's key has not lapsed yet) and a passing
  backend failure are retried with backoff; each run that raises counts toward
  DROPIN_MAX_ATTEMPTS, after which the job fails for good.
* `dropin.enrol_face` (`dropin.face_enrol`): a registered selfie, enrolled at the face backend.
* `dropin.forget_face` (`dropin.face_forget`): a deleted face (or a photo's unstored faces)
  forgotten at the backend. No row waits for it (the face row is gone), so it records its inbox
  row once the backend forgot them: the lost-message sweep (flow `dropin_face_forgets`) sends a
  message without one again, lost by Redis or out of retries during a backend outage.
* `dropin.jobs_requeue_stale`, `dropin.faces_requeue_stale` (beat): work whose message was lost.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.core.locks import LockBusy, LockLost, StaleLeaseError
from apps.dropin.faces import FaceBackendUnavailable
from apps.dropin.services import (
    TOPIC_FACE_ENROL,
    TOPIC_FACE_FORGET,
    TOPIC_JOB_QUEUED,
    dropin_job_process,
    face_enrol,
    face_forget,
    faces_requeue_stale,
    jobs_requeue_stale,
)
from apps.ops.killswitch import CapabilityDisabled
from apps.outbox.routing import outbox_consumer
from apps.outbox.services import consume_once
from apps.tenancy.context import system_context

FORGET_FACE_CONSUMER = "dropin.forget_face"

_RETRY: dict[str, Any] = {"retry_backoff": 2, "retry_backoff_max": 300, "retry_jitter": True, "max_retries": 10}


@outbox_consumer(
    TOPIC_JOB_QUEUED,
    name="dropin.process_job",
    once=False,
    # SoftTimeLimitExceeded: a slow backend; the attempt is counted, so retries stay bounded.
    autoretry_for=(
        LockBusy,
        LockLost,
        StaleLeaseError,
        FaceBackendUnavailable,
        OSError,
        CapabilityDisabled,
        SoftTimeLimitExceeded,
    ),
    **_RETRY,
)
def process_job(*, message_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return dropin_job_process(job_id=int(payload["job_id"])).__dict__


@outbox_consumer(
    TOPIC_FACE_ENROL,
    name="dropin.enrol_face",
    once=False,
    autoretry_for=(FaceBackendUnavailable, OSError, CapabilityDisabled, SoftTimeLimitExceeded),
    **_RETRY,
)
def enrol_face(*, message_id: str, payload: dict[str, Any]) -> str:
    return face_enrol(face_id=int(payload["face_id"]))


# once=False: the backend call must not sit inside the inbox transaction; forgetting is idempotent.
@outbox_consumer(
    TOPIC_FACE_FORGET,
    name=FORGET_FACE_CONSUMER,
    once=False,
    lost_message_flow="dropin_face_forgets",
    autoretry_for=(FaceBackendUnavailable, OSError),
    **_RETRY,
)
def forget_face(*, message_id: str, payload: dict[str, Any]) -> None:
    face_forget(
        backend=str(payload["backend"]),
        collection=str(payload["collection"]),
        refs=[str(ref) for ref in payload.get("refs", [])],
        subjects=[str(subject) for subject in payload.get("subjects", [])],
    )
    # Done: the inbox row tells the lost-message sweep (apps/outbox/unconsumed.py) that the
    # backend forgot them. A redelivery still calls the backend again, harmlessly.
    with consume_once(consumer=FORGET_FACE_CONSUMER, message_id=message_id):
        pass


@shared_task(name="dropin.jobs_requeue_stale", acks_late=True)
def jobs_requeue_stale_task() -> int:
    """Idempotent: what is asked for again is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale drop-in job sweep"):
        return jobs_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS)


@shared_task(name="dropin.faces_requeue_stale", acks_late=True)
def faces_requeue_stale_task() -> int:
    """Idempotent, as above."""
    with system_context("stale drop-in face sweep"):
        return faces_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS)
