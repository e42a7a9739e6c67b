"""Drop-in services: selfies enrolled and deleted, one job per photo, matches and notifications
once, the usage debit once, fencing, bounded retries (fake face backend, real Postgres and Redis)."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client, override_settings
from django.utils import timezone
from django_redis import get_redis_connection

from apps.catalog import storage
from apps.catalog.models import Photo
from apps.core.locks import FencedLease, StaleLeaseError, redis_key
from apps.dropin import services
from apps.dropin.faces import FaceBackendUnavailable
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch
from apps.dropin.services import (
    TOPIC_FACE_ENROL,
    TOPIC_FACE_FORGET,
    TOPIC_JOB_QUEUED,
    ConsentRequired,
    SelfieRefused,
    dropin_job_process,
    dropin_job_request,
    face_delete,
    face_enrol,
    jobs_requeue_stale,
    lease_name,
    selfie_register,
)
from apps.ledger.models import LedgerAccount, LedgerEvent
from apps.notifications.models import Attendee, Notification
from apps.tenancy.context import system_context, tenant_context
from tests.dropin.helpers import (
    an_event,
    enrolled_face,
    job,
    matches,
    new_photo_notifications,
    outbox_payloads,
    photo_of,
)
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def process(org: Any, job_id: int) -> services.JobRunResult:
    with tenant_context(org.pk):
        return dropin_job_process(job_id=job_id)


def in_own_transaction(org: Any, outcomes: list[str], body: Callable[[], object]) -> Callable[[], None]:
    """A thread's target running `body` in a transaction of its own, in the studio's context, on the
    thread's own connection (closed after); "ok", or the exception's repr, is appended to `outcomes`."""

    def run() -> None:
        try:
            with tenant_context(org.pk), transaction.atomic():
                body()
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            outcomes.append(repr(exc))
        finally:
            connection.close()

    return run


def usage_debits(org: Any) -> list[tuple[int, str, str]]:
    with system_context("test: ledger"):
        accounts = LedgerAccount.objects.filter(tenant=org, kind="usage", client_id="darkroom:dropin")
        return list(
            LedgerEvent.objects.filter(account__in=accounts).values_list("amount_minor", "currency", "idempotency_key")
        )


# --- selfies --------------------------------------------------------------------------------


def test_a_selfie_is_enrolled_in_the_background_and_its_bytes_dropped(tenant_a: Any) -> None:
    # given: an event
    event = an_event(tenant_a.org)
    image = fake_face_image(["ann"])
    # when: the studio registers Ann's selfie
    with tenant_context(tenant_a.org.pk):
        face = selfie_register(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            email="Ann@Example.com",
            consent=True,
            image=io.BytesIO(image),
            image_size=len(image),
            actor_label="t",
        )
    # then: it waits, pending, holding the selfie's bytes, with an enrol message
    assert face.status == "pending" and bytes(face.selfie_image) == image
    assert outbox_payloads(TOPIC_FACE_ENROL) == [{"face_id": face.pk}]
    # when: the enrol consumer runs (twice: a redelivery)
    with tenant_context(tenant_a.org.pk):
        assert face_enrol(face_id=face.pk) == "enrolled"
        assert face_enrol(face_id=face.pk) == "skipped"
        face.refresh_from_db()
        email = face.attendee.email
    # then: it is enrolled, the selfie's bytes are gone, one attempt was counted
    assert (face.status, face.ref, face.selfie_image, email) == ("enrolled", "ann", None, "ann@example.com")
    assert face.attempts == 1


@pytest.mark.parametrize(("identities", "reason"), [([], "No face"), (["ann", "bob"], "faces")])
def test_a_selfie_without_exactly_one_face_is_rejected(tenant_a: Any, identities: list[str], reason: str) -> None:
    event = an_event(tenant_a.org)
    image = fake_face_image(identities)
    with tenant_context(tenant_a.org.pk):
        face = selfie_register(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            email="x@example.com",
            consent=True,
            image=io.BytesIO(image),
            image_size=len(image),
            actor_label="t",
        )
        assert face_enrol(face_id=face.pk) == "rejected"
        face.refresh_from_db()
    assert face.status == "rejected" and face.selfie_image is None
    assert reason.lower() in face.rejected_reason.lower()


def test_without_consent_or_with_a_non_image_nothing_is_written(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    image = fake_face_image(["ann"])
    with tenant_context(tenant_a.org.pk):
        with pytest.raises(ConsentRequired):
            selfie_register(
                tenant_id=tenant_a.org.pk, event_id=event.pk, email="a@example.com", consent=False,
                image=io.BytesIO(image), image_size=len(image), actor_label="t",
            )  # fmt: skip
        with pytest.raises(SelfieRefused):
            selfie_register(
                tenant_id=tenant_a.org.pk, event_id=event.pk, email="a@example.com", consent=True,
                image=io.BytesIO(b"not an image"), image_size=12, actor_label="t",
            )  # fmt: skip
        assert not AttendeeFace.objects.exists()
    assert outbox_payloads(TOPIC_FACE_ENROL) == []


def test_a_face_deleted_while_its_enrolment_runs_is_forgotten_again(tenant_a: Any, monkeypatch: Any) -> None:
    # given: a pending selfie
    event = an_event(tenant_a.org)
    image = fake_face_image(["ann"])
    with tenant_context(tenant_a.org.pk):
        face = selfie_register(
            tenant_id=tenant_a.org.pk, event_id=event.pk, email="a@example.com", consent=True,
            image=io.BytesIO(image), image_size=len(image), actor_label="t",
        )  # fmt: skip
    backend = services.get_backend("fake")
    real_enroll = backend.enroll

    def enroll_then_delete(**kwargs: Any) -> Any:
        enrolled = real_enroll(**kwargs)
        with tenant_context(tenant_a.org.pk), transaction.atomic():
            face_delete(tenant_id=tenant_a.org.pk, attendee_id=face.attendee_id, actor_label="attendee")
        return enrolled

    monkeypatch.setattr(backend, "enroll", enroll_then_delete)
    # when: the attendee deletes it while the backend enrols it
    with tenant_context(tenant_a.org.pk):
        assert face_enrol(face_id=face.pk) == "skipped"
        assert not AttendeeFace.objects.exists()
    # then: what the backend enrolled is forgotten, by subject (the deletion) and by ref (the enrolment)
    subject = f"face-{face.pk}"
    forgets = outbox_payloads(TOPIC_FACE_FORGET)
    assert [(f["refs"], f["subjects"]) for f in forgets] == [([], [subject]), (["ann"], [subject])]


def test_registering_again_replaces_the_face_and_its_matches(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    first = enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    process(tenant_a.org, job_id)
    assert len(matches(tenant_a.org)) == 1
    # when: Ann registers a new selfie
    second = enrolled_face(tenant_a.org, event, "ann")
    # then: one face (the new one), the old one forgotten, its matches gone
    with system_context("test"):
        assert list(AttendeeFace.objects.values_list("pk", flat=True)) == [second.pk]
    assert second.attendee_id == first.attendee_id and second.pk != first.pk
    assert matches(tenant_a.org) == []
    assert ["ann"] in [f["refs"] for f in outbox_payloads(TOPIC_FACE_FORGET)]


# --- jobs -----------------------------------------------------------------------------------


def test_a_photo_upload_creates_one_job_with_its_message(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    photo, job_id = photo_of(tenant_a.org, event, [])
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        assert services.dropin_job_enqueue(photo=photo) is None  # a second enqueue: no second job
    assert outbox_payloads(TOPIC_JOB_QUEUED) == [{"job_id": job_id}]
    with system_context("test"), pytest.raises(IntegrityError), transaction.atomic():
        DropInJob.objects.create(tenant=tenant_a.org, photo=photo, event=event)


def test_matches_notify_each_attendee_once_and_bill_the_searches_once(tenant_a: Any) -> None:
    # given: Ann and Cy registered; a photo shows Ann twice and Bob (not registered)
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    enrolled_face(tenant_a.org, event, "cy")
    photo, job_id = photo_of(tenant_a.org, event, ["ann", "bob", "ann"], rendered=True)
    # when: the job runs, then runs again (a redelivered message)
    with override_settings(DROPIN_SEARCH_PRICE_MINOR=3):
        result = process(tenant_a.org, job_id)
        again = process(tenant_a.org, job_id)
    # then: both of Ann's faces match, she is notified once, the three searches billed once
    assert (result.outcome, result.faces, result.matches, result.notified, result.searches) == (
        "succeeded", 3, 2, 1, 3,
    )  # fmt: skip
    assert again.outcome == "skipped"
    assert [(a, k) for _, a, k in matches(tenant_a.org)] == [
        (ann.attendee_id, "fake-0-ann"),
        (ann.attendee_id, "fake-2-ann"),
    ]
    assert new_photo_notifications(tenant_a.org) == [(ann.attendee_id, f"photo:{photo.pk}")]
    with system_context("test: notification link"):
        [link] = Notification.objects.filter(tenant=tenant_a.org, kind="new_photos").values_list("link", flat=True)
    assert link == f"/s/{tenant_a.org.slug}/{event.slug}/photos/{photo.pk}/"  # the photo's page in the shop
    assert usage_debits(tenant_a.org) == [(9, "EUR", f"dropin:photo:{photo.pk}")]
    finished = job(job_id)
    assert (finished.status, finished.attempts, finished.faces, finished.matches) == ("succeeded", 1, 3, 2)


def test_a_photo_of_an_event_without_registered_faces_is_not_searched_nor_billed(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    result = process(tenant_a.org, job_id)
    assert (result.outcome, result.searches) == ("succeeded", 0)
    assert usage_debits(tenant_a.org) == []


def test_a_worker_that_died_mid_run_is_finished_by_the_next_without_doubles(tenant_a: Any) -> None:
    # given: a run that committed its start and died (status running, attempt 1)
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    with system_context("test"):
        DropInJob.objects.filter(pk=job_id).update(status="running", attempts=1, started_at=photo.created_at)
    # when: the redelivered message runs it (the lease's Redis key lapsed)
    result = process(tenant_a.org, job_id)
    # then: one match, one notification, one debit; the attempt is counted
    assert result.outcome == "succeeded"
    assert len(matches(tenant_a.org)) == 1
    assert new_photo_notifications(tenant_a.org) == [(ann.attendee_id, f"photo:{photo.pk}")]
    assert len(usage_debits(tenant_a.org)) == 1
    assert job(job_id).attempts == 2


def test_a_stale_worker_cannot_commit_after_a_newer_one_took_over(tenant_a: Any, monkeypatch: Any) -> None:
    # given: a job whose first worker pauses after its last lease extension, before committing
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    results: dict[str, Any] = {}
    real_extend = FencedLease.extend
    paused = {"done": False}

    def newer_worker() -> None:
        try:
            with tenant_context(tenant_a.org.pk):
                results["newer"] = dropin_job_process(job_id=job_id)
        finally:
            connection.close()

    def extend_then_pause(lease: FencedLease, *args: Any, **kwargs: Any) -> Any:
        extended = real_extend(lease, *args, **kwargs)
        if not paused["done"] and threading.current_thread() is threading.main_thread():
            paused["done"] = True
            # meanwhile its Redis key lapses and a newer worker runs the whole job
            get_redis_connection("default").delete(redis_key(lease_name(job_id)))
            thread = threading.Thread(target=newer_worker)
            thread.start()
            thread.join()
        return extended

    monkeypatch.setattr(FencedLease, "extend", extend_then_pause)
    # when: the first worker resumes and tries to commit its results
    with pytest.raises(StaleLeaseError):
        process(tenant_a.org, job_id)
    # then: its epoch refused it; only the newer worker's results exist, once
    assert results["newer"].outcome == "succeeded"
    assert len(matches(tenant_a.org)) == 1 and len(new_photo_notifications(tenant_a.org)) == 1
    assert len(usage_debits(tenant_a.org)) == 1


def test_a_failing_backend_is_retried_then_the_job_fails_for_good_and_can_be_queued_again(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["!unavailable"])
    with override_settings(DROPIN_MAX_ATTEMPTS=2):
        for _ in range(2):
            with pytest.raises(FaceBackendUnavailable):
                process(tenant_a.org, job_id)
        assert (job(job_id).status, job(job_id).attempts) == ("running", 2)
        assert "FaceBackendUnavailable" in job(job_id).last_error
        # the next delivery gives up
        assert process(tenant_a.org, job_id).outcome == "failed"
    failed = job(job_id)
    assert failed.status == "failed" and "gave up after 2 attempts" in failed.last_error
    # when: the studio asks again (twice)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        _, queued = dropin_job_request(tenant_id=tenant_a.org.pk, photo_id=photo.pk, actor_label="t")
        _, queued_again = dropin_job_request(tenant_id=tenant_a.org.pk, photo_id=photo.pk, actor_label="t")
    assert (queued, queued_again) == (True, False)
    assert (job(job_id).status, job(job_id).attempts) == ("queued", 0)
    assert outbox_payloads(TOPIC_JOB_QUEUED) == [{"job_id": job_id}, {"job_id": job_id}]


def test_the_admin_queues_failed_jobs_again_but_not_a_withdrawn_photos(tenant_a: Any) -> None:
    # given: two jobs that failed for good; the second one's photo was withdrawn since
    event = an_event(tenant_a.org)
    _, first = photo_of(tenant_a.org, event, ["ann"])
    withdrawn, second = photo_of(tenant_a.org, event, ["ann"])
    with system_context("test: failed jobs"):
        DropInJob.objects.filter(pk__in=[first, second]).update(status="failed", finished_at=timezone.now())
        Photo.objects.filter(pk=withdrawn.pk).update(withdrawn_at=timezone.now(), withdrawn_reason="taken down")
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    # when: the operator queues both again from the job list
    response = operator.post(
        "/admin/dropin/dropinjob/",
        {"action": "queue_again", "_selected_action": [str(first), str(second)]},
        follow=True,
    )
    # then: the first is queued again; the withdrawn photo's job stays failed, and the page says so
    assert response.status_code == 200
    assert (job(first).status, job(second).status) == ("queued", "failed")
    assert [str(m) for m in response.context["messages"]] == [
        "1 job queued again.",
        "1 job left failed: its photo is withdrawn.",
    ]


def test_the_admin_counts_the_jobs_it_queued_again_in_words_that_fit(tenant_a: Any) -> None:
    # given: four jobs that failed for good; the photos of the last two were withdrawn since
    event = an_event(tenant_a.org)
    made = [photo_of(tenant_a.org, event, ["ann"]) for _ in range(4)]
    with system_context("test: failed jobs"):
        DropInJob.objects.filter(pk__in=[job_id for _, job_id in made]).update(
            status="failed", finished_at=timezone.now()
        )
        Photo.objects.filter(pk__in=[photo.pk for photo, _ in made[2:]]).update(
            withdrawn_at=timezone.now(), withdrawn_reason="taken down"
        )
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    # when: the operator queues all four again
    response = operator.post(
        "/admin/dropin/dropinjob/",
        {"action": "queue_again", "_selected_action": [str(job_id) for _, job_id in made]},
        follow=True,
    )
    # then: each message counts its jobs in the plural, without "(s)"
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "2 jobs queued again.",
        "2 jobs left failed: their photos are withdrawn.",
    ]


def test_an_unreadable_original_fails_the_job_at_once(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    storage.write_exact(name=photo.original.name, data=b"garbage")
    assert process(tenant_a.org, job_id).outcome == "failed"
    assert job(job_id).attempts == 1 and "unreadable" in job(job_id).last_error


def test_deleting_a_face_deletes_its_matches_and_forgets_it(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    process(tenant_a.org, job_id)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        face_delete(tenant_id=tenant_a.org.pk, attendee_id=ann.attendee_id, actor_label="t")
    assert matches(tenant_a.org) == []
    assert outbox_payloads(TOPIC_FACE_FORGET)[-1]["refs"] == ["ann"]
    assert len(new_photo_notifications(tenant_a.org)) == 1  # what was told stays told


def test_the_sweep_queues_lost_jobs_again(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    _, job_id = photo_of(tenant_a.org, event, [])
    with system_context("test: sweep"):
        assert jobs_requeue_stale(older_than_seconds=3600) == 0
        assert jobs_requeue_stale(older_than_seconds=0) == 1
    assert outbox_payloads(TOPIC_JOB_QUEUED) == [{"job_id": job_id}, {"job_id": job_id}]


def test_another_studio_sees_no_faces_jobs_or_matches(tenant_a: Any, tenant_b: Any) -> None:
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    process(tenant_a.org, job_id)
    with tenant_context(tenant_b.org.pk):
        assert not AttendeeFace.objects.exists()
        assert not DropInJob.objects.exists()
        assert not FaceMatch.objects.exists()


def test_constraints_refuse_inconsistent_rows(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    face = enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, [])
    with system_context("test: constraints"):
        bad_updates = [
            (AttendeeFace.objects.filter(pk=face.pk), {"status": "pending"}),  # pending without a selfie
            (AttendeeFace.objects.filter(pk=face.pk), {"selfie_image": b"kept after enrolment"}),
            (AttendeeFace.objects.filter(pk=face.pk), {"attempts": -1}),
            (AttendeeFace.objects.filter(pk=face.pk), {"enrolled_at": None}),
            (DropInJob.objects.filter(pk=job_id), {"status": "succeeded"}),  # finished without a time
            (DropInJob.objects.filter(pk=job_id), {"attempts": -1}),
        ]
        for queryset, values in bad_updates:
            with pytest.raises(IntegrityError), transaction.atomic():
                queryset.update(**values)


def test_a_selfie_that_keeps_failing_is_rejected_after_the_attempts_and_forgotten(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    image = fake_face_image(["!unavailable"])
    with tenant_context(tenant_a.org.pk):
        face = selfie_register(
            tenant_id=tenant_a.org.pk, event_id=event.pk, email="a@example.com", consent=True,
            image=io.BytesIO(image), image_size=len(image), actor_label="t",
        )  # fmt: skip
        with override_settings(DROPIN_MAX_ATTEMPTS=2):
            for _ in range(2):
                with pytest.raises(FaceBackendUnavailable):
                    face_enrol(face_id=face.pk)
            assert face_enrol(face_id=face.pk) == "rejected"
        face.refresh_from_db()
    assert (face.status, face.attempts, face.selfie_image) == ("rejected", 2, None)
    assert "could not be processed" in face.rejected_reason
    assert outbox_payloads(TOPIC_FACE_FORGET)[-1]["subjects"] == [f"face-{face.pk}"]


def test_two_registrations_of_one_attendee_at_once_leave_one_face(tenant_a: Any) -> None:
    # given: a known attendee without a face, and two registrations racing (page and API)
    event = an_event(tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        Attendee.objects.create(tenant=tenant_a.org, event=event, email="ann@example.com")
    image = fake_face_image(["ann"])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def register() -> None:
        barrier.wait()
        selfie_register(
            tenant_id=tenant_a.org.pk, event_id=event.pk, email="ann@example.com", consent=True,
            image=io.BytesIO(image), image_size=len(image), actor_label="t",
        )  # fmt: skip

    threads = [threading.Thread(target=in_own_transaction(tenant_a.org, outcomes, register)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: both succeed, one after the other; the second replaced the first
    assert outcomes == ["ok", "ok"]
    with system_context("test"):
        assert AttendeeFace.objects.count() == 1


def _wait_until_another_session_waits_for_a_lock() -> None:
    """Poll (from the caller's open transaction) until another session of this database waits
    for a row lock."""
    for _ in range(200):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the competing registration never waited for the face")


def test_a_new_selfie_while_a_photo_of_the_attendee_is_recorded_waits_for_it(tenant_a: Any, monkeypatch: Any) -> None:
    # given: Ann's enrolled face, and a job about to record its match of her (her face locked)
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    image = fake_face_image(["ann"])
    outcomes: list[str] = []
    competitors: list[threading.Thread] = []
    real_bulk_create = FaceMatch.objects.bulk_create

    def register_again() -> None:
        selfie_register(
            tenant_id=tenant_a.org.pk, event_id=event.pk, email="ann@example.com", consent=True,
            image=io.BytesIO(image), image_size=len(image), actor_label="attendee",
        )  # fmt: skip

    def compete_then_insert(objs: Any, **kwargs: Any) -> Any:
        # when: Ann sends a new selfie right then (it waits for her face's lock)
        competitor = threading.Thread(target=in_own_transaction(tenant_a.org, outcomes, register_again))
        competitor.start()
        _wait_until_another_session_waits_for_a_lock()
        monkeypatch.setattr(FaceMatch.objects, "bulk_create", real_bulk_create)
        created = real_bulk_create(objs, **kwargs)
        competitors.append(competitor)
        return created

    monkeypatch.setattr(FaceMatch.objects, "bulk_create", compete_then_insert)
    result = process(tenant_a.org, job_id)
    competitors[0].join()
    # then: no deadlock: the job records and notifies her, then her new selfie replaces the face
    # (and the match of the old one)
    assert result.outcome == "succeeded" and outcomes == ["ok"]
    assert len(new_photo_notifications(tenant_a.org)) == 1 and matches(tenant_a.org) == []
    with system_context("test"):
        assert list(AttendeeFace.objects.values_list("status", flat=True)) == ["pending"]


def test_a_job_recording_a_photo_locks_only_the_faces_it_matched(tenant_a: Any, monkeypatch: Any) -> None:
    # given: Ann and Bob enrolled; a job about to record its match of Ann (a photo without Bob)
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    bob = enrolled_face(tenant_a.org, event, "bob")
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    outcomes: list[str] = []
    real_bulk_create = FaceMatch.objects.bulk_create

    def bob_deletes_his_face() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        face_delete(tenant_id=tenant_a.org.pk, attendee_id=bob.attendee_id, actor_label="attendee")

    def bob_meanwhile(objs: Any, **kwargs: Any) -> Any:
        # when: meanwhile Bob deletes his face
        thread = threading.Thread(target=in_own_transaction(tenant_a.org, outcomes, bob_deletes_his_face))
        thread.start()
        thread.join()
        return real_bulk_create(objs, **kwargs)

    monkeypatch.setattr(FaceMatch.objects, "bulk_create", bob_meanwhile)
    result = process(tenant_a.org, job_id)
    # then: his deletion did not wait for a photo he is not in; the job recorded Ann's match
    assert outcomes == ["ok"]
    assert result.outcome == "succeeded" and len(matches(tenant_a.org)) == 1


def test_the_usage_account_is_out_of_the_ledger_apis_reach(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    process(tenant_a.org, job_id)
    with system_context("test"):
        account = LedgerAccount.objects.get(tenant=tenant_a.org, client_id="darkroom:dropin")
    api = tenant_a.client()
    # a studio can neither pre-empt a charge's key on it nor create a twin of it
    debit = api.post(
        "/api/v1/ledger/debits",
        {"account_id": account.pk, "amount_minor": 1, "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"dropin:photo:{photo.pk + 1}",
    )
    assert debit.status_code == 422 and debit.json()["type"].endswith("ledger-account-reserved")
    twin = api.post(
        "/api/v1/ledger/accounts",
        {"currency": "EUR", "client_id": "darkroom:dropin"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert twin.status_code == 400
    with system_context("test"):
        assert LedgerAccount.objects.filter(tenant=tenant_a.org, client_id="darkroom:dropin").count() == 1


def test_the_usage_currency_must_be_one_darkroom_sells_in() -> None:
    from django.test import override_settings

    from apps.dropin.checks import dropin_usage_currency_is_supported

    assert dropin_usage_currency_is_supported() == []
    for code in ("XYZ", "eur", ""):
        with override_settings(DROPIN_USAGE_CURRENCY=code):
            [error] = dropin_usage_currency_is_supported()
        assert error.id == "dropin.E001", code
