"""Celery tasks of drop-in (thin: call a service), on the `dropin` queue (its own worker: face
detection is CPU-heavy and must not hold up payments or announcements).

* `dropin.process_job` (`dropin.job_queued`): one photo's face search and its matches, and the
  indexing of its faces for "find me" (`apps/dropin/findme.py`), committed together. A busy or
  lost lease (another worker runs it, or a dead holder's key has not lapsed yet) and a passing
  backend failure are retried with backoff; each run that raises counts toward
  DROPIN_MAX_ATTEMPTS, after which the job fails for good.
* `dropin.enrol_face` (`dropin.face_enrol`): a registered selfie, enrolled at the face backend.
* `dropin.forget_face` (`dropin.face_forget`): a deleted face forgotten at the backend.
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
from apps.tenancy.context import system_context

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


@outbox_consumer(
    TOPIC_FACE_FORGET, name="dropin.forget_face", once=False, autoretry_for=(FaceBackendUnavailable, OSError), **_RETRY
)
def forget_face(*, message_id: str, payload: dict[str, Any]) -> None:
    face_forget(
        backend=str(payload["backend"]),
        collection=str(payload["collection"]),
        refs=[str(ref) for ref in payload.get("refs", [])],
        subjects=[str(subject) for subject in payload.get("subjects", [])],
    )


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
