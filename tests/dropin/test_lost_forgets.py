"""A deleted face's `dropin.face_forget` has no row that waits for it (the face row is gone), so
its consumer records an inbox row once the backend forgot the face, and the lost-message sweep
(flow `dropin_face_forgets`) sends a message without one again: lost by Redis, or out of
retries while the backend was down. Forgetting a face already forgotten is harmless.
Rekognition through botocore's Stubber on a real client; real Postgres and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from apps.dropin.faces import FaceBackendUnavailable, base
from apps.dropin.faces.rekognition import RekognitionFaceBackend
from apps.dropin.services import TOPIC_FACE_FORGET, collection_name, face_delete
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.unconsumed import REQUEUES_HEADER, outbox_requeue_unconsumed
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tests.dropin.helpers import an_event
from tests.dropin.test_analyse_once import rekognition_enrolled
from tests.dropin.test_face_backends import FACE_ID, a_client, list_response, listed

pytestmark = pytest.mark.django_db(transaction=True)

FLOW, CONSUMER = "dropin_face_forgets", "dropin.forget_face"


@pytest.fixture(autouse=True)
def _consumers_registered() -> None:
    celery_app.loader.import_default_modules()  # the consumers declare their flows on import


@pytest.fixture
def rekognition(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, list[str]]]:
    """The Rekognition backend on a real client whose calls are stubbed; `sent` names each call."""
    client = a_client()
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.rekognition.*", lambda model, **_: sent.append(model.name))
    monkeypatch.setitem(base._backends, "rekognition", RekognitionFaceBackend(client=client))
    with override_settings(DROPIN_FACE_BACKEND="rekognition"), Stubber(client) as stubber:
        yield stubber, sent
        stubber.assert_no_pending_responses()


def published_an_hour_ago(message: OutboxMessage) -> None:
    """The relay published it an hour ago (then Redis forgot it, or the worker gave up on it)."""
    with system_context("test: published"):
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now() - timedelta(hours=1)
        )


def sweep() -> int:
    with system_context("test: lost-message sweep"):
        return outbox_requeue_unconsumed(older_than_seconds=1800, max_age_seconds=86_400, max_requeues=5, limit=100)[
            FLOW
        ]


def run_consumer(message: OutboxMessage) -> None:
    """The worker's run of the message (called directly: a retry raises instead, like the last one)."""
    with tenant_context(message.tenant_id):
        celery_app.tasks[CONSUMER](message_id=str(message.pk), payload=message.payload)


def state(message: OutboxMessage) -> tuple[str, Any]:
    with system_context("test: read"):
        row = OutboxMessage.objects.get(pk=message.pk)
    return row.status, row.headers.get(REQUEUES_HEADER)


def recorded(message: OutboxMessage) -> bool:
    return InboxEntry.objects.filter(consumer=CONSUMER, message_id=message.pk).exists()


def test_a_forget_out_of_retries_while_rekognition_is_down_is_sent_again_until_the_face_is_gone(
    tenant_a: Any, rekognition: tuple[Stubber, list[str]]
) -> None:
    # given: Ann's selfie enrolled at Rekognition, then her face deleted (consent withdrawn)
    stubber, sent = rekognition
    event = an_event(tenant_a.org)
    ann = rekognition_enrolled(tenant_a.org, event, stubber)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        face_delete(tenant_id=tenant_a.org.pk, attendee_id=ann.attendee_id, actor_label="attendee")
    with system_context("test: read"):
        message = OutboxMessage.objects.get(topic=TOPIC_FACE_FORGET)
    published_an_hour_ago(message)
    selfies = collection_name(tenant_id=tenant_a.org.pk, event_id=event.pk)
    listing = {"CollectionId": selfies, "MaxResults": 4096}
    # when: its last retry still finds Rekognition throttling
    stubber.add_client_error("list_faces", "ThrottlingException", "slow down", 400, listing)
    with pytest.raises(FaceBackendUnavailable):
        run_consumer(message)
    # then: nothing says the face is gone, so the sweep sends the message again
    assert not recorded(message)
    assert sweep() == 1
    assert state(message) == ("pending", 1)
    # when: the relay publishes it again and the worker runs it with Rekognition back
    published_an_hour_ago(message)
    stubber.add_response("list_faces", list_response(listed(FACE_ID, f"face-{ann.pk}")), listing)
    stubber.add_response("delete_faces", {"DeletedFaces": [FACE_ID]}, {"CollectionId": selfies, "FaceIds": [FACE_ID]})
    run_consumer(message)
    # then: the face is deleted at Rekognition, the consumer recorded it, and the sweep leaves it be
    assert sent[-2:] == ["ListFaces", "DeleteFaces"]
    assert recorded(message)
    assert sweep() == 0
    assert state(message) == ("published", 1)
    # when: a copy of the message arrives after all (a redelivery): the face is already forgotten
    stubber.add_response("list_faces", list_response(), listing)
    stubber.add_response(
        "delete_faces",
        {"UnsuccessfulFaceDeletions": [{"FaceId": FACE_ID, "Reasons": ["FACE_NOT_FOUND"]}]},
        {"CollectionId": selfies, "FaceIds": [FACE_ID]},
    )
    # then: harmless
    run_consumer(message)
    assert recorded(message)
