"""An attendee is told of a new photo of them ("New photos of you", and the e-mail alert it
arms) only once the photo's page is up in the shop: its previews rendered. Drop-in and the render
run in parallel and serialise on the photo's row, so each match is told once, whichever commits
first; a photo whose render fails, or that is withdrawn first, tells nobody (fake face backend,
real Postgres, real threads for the race)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from apps.catalog import services as catalog
from apps.catalog import storage
from apps.catalog.models import Photo
from apps.catalog.products import Actor
from apps.catalog.withdrawal import photo_withdraw
from apps.dropin import services as dropin
from apps.dropin.services import dropin_job_process
from apps.notifications.models import Notification, PhotoAlert
from apps.notifications.photo_alerts import attendee_photo_alerts_set
from apps.tenancy.context import system_context, tenant_context
from tests.dropin.helpers import an_event, enrolled_face, matches, new_photo_notifications, photo_of, render
from tests.fixtures import backend_pid, wait_until_blocked

pytestmark = pytest.mark.django_db(transaction=True)


def ann_with_alerts(org: Any, event: Any) -> Any:
    """Ann's face enrolled, and her e-mail alerts of new photos on."""
    ann = enrolled_face(org, event, "ann")
    with tenant_context(org.pk), transaction.atomic():
        attendee_photo_alerts_set(tenant_id=org.pk, attendee_id=ann.attendee_id, enabled=True, actor_label="test")
    return ann


def process(org: Any, job_id: int) -> dropin.JobRunResult:
    with tenant_context(org.pk):
        return dropin_job_process(job_id=job_id)


def alert_generation(attendee_id: int) -> int | None:
    """How often Ann's e-mail alert was armed (None: never)."""
    with system_context("test: alerts"):
        alert = PhotoAlert.objects.filter(attendee_id=attendee_id, due_at__isnull=False).first()
    return alert.generation if alert is not None else None


def page_of(photo: Photo) -> int:
    """The status of the photo's shop page, where the notification leads."""
    with system_context("test: link"):
        link = Notification.objects.values_list("link", flat=True).first()
    event = photo.event
    return Client().get(link or f"/s/{event.tenant.slug}/{event.slug}/photos/{photo.pk}/").status_code


def test_a_photo_matched_before_its_previews_are_ready_is_told_when_they_are(tenant_a: Any) -> None:
    # given: Ann (alerts on) and a new photo of her whose drop-in job runs before its render
    event = an_event(tenant_a.org)
    ann = ann_with_alerts(tenant_a.org, event)
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    # when: drop-in matches her
    run = process(tenant_a.org, job_id)
    # then: the match is recorded, but she is not told yet: the photo's page is not up
    assert (run.outcome, run.matches, run.notified) == ("succeeded", 1, 0)
    assert len(matches(tenant_a.org)) == 1
    assert new_photo_notifications(tenant_a.org) == [] and alert_generation(ann.attendee_id) is None
    assert page_of(photo) == 404
    # when: the render finishes
    assert render(photo) == "ready"
    # then: she is told once, her alert is armed, and the link opens the photo's page
    assert new_photo_notifications(tenant_a.org) == [(ann.attendee_id, f"photo:{photo.pk}")]
    assert alert_generation(ann.attendee_id) == 1
    assert page_of(photo) == 200
    # when: the render runs again (a redelivered message)
    assert render(photo) == "ready"
    # then: nothing more
    assert len(new_photo_notifications(tenant_a.org)) == 1 and alert_generation(ann.attendee_id) == 1


def test_a_photo_rendered_first_is_told_by_its_drop_in_run(tenant_a: Any) -> None:
    # given: Ann (alerts on) and a new photo of her whose render finishes first (nobody matched yet)
    event = an_event(tenant_a.org)
    ann = ann_with_alerts(tenant_a.org, event)
    photo, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    assert new_photo_notifications(tenant_a.org) == []
    # when: drop-in matches her
    run = process(tenant_a.org, job_id)
    # then: it tells her once, and arms her alert once
    assert (run.matches, run.notified) == (1, 1)
    assert new_photo_notifications(tenant_a.org) == [(ann.attendee_id, f"photo:{photo.pk}")]
    assert alert_generation(ann.attendee_id) == 1


def test_a_photo_whose_render_fails_tells_nobody(tenant_a: Any) -> None:
    # given: a photo of Ann matched by drop-in, whose original then cannot be rendered
    event = an_event(tenant_a.org)
    ann = ann_with_alerts(tenant_a.org, event)
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    assert process(tenant_a.org, job_id).matches == 1
    storage.write_exact(name=photo.original.name, data=b"not an image")
    # when: the render fails
    assert render(photo) == "failed"
    # then: she is never told of a photo whose page does not exist
    assert new_photo_notifications(tenant_a.org) == [] and alert_generation(ann.attendee_id) is None


def test_a_photo_withdrawn_before_its_render_tells_nobody(tenant_a: Any) -> None:
    # given: a photo of Ann matched by drop-in, then withdrawn before its render ran
    event = an_event(tenant_a.org)
    ann = ann_with_alerts(tenant_a.org, event)
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    assert process(tenant_a.org, job_id).matches == 1
    with tenant_context(tenant_a.org.pk):
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=photo.pk, reason="blurred", actor=Actor("t"))
    # when: the render runs late
    assert render(photo) == "withdrawn"
    # then: nobody is told
    assert new_photo_notifications(tenant_a.org) == [] and alert_generation(ann.attendee_id) is None


@pytest.mark.parametrize("first", ["drop-in", "render"])
def test_a_render_and_a_drop_in_run_at_once_tell_the_match_once(tenant_a: Any, monkeypatch: Any, first: str) -> None:
    # given: a photo of Ann; one of its drop-in run and its render holds the photo's row in its
    # recording transaction when the other comes to record (from another connection)
    event = an_event(tenant_a.org)
    ann = ann_with_alerts(tenant_a.org, event)
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    outcome: dict[str, Any] = {}
    competitor_pid: list[int] = []

    def second() -> None:
        try:
            competitor_pid.append(backend_pid())
            if first == "drop-in":
                outcome["second"] = render(photo)
            else:
                outcome["second"] = process(tenant_a.org, job_id).outcome
        except DatabaseError as exc:  # a deadlock would land here
            outcome["error"] = exc
        finally:
            connection.close()

    competitor, started = threading.Thread(target=second), threading.Event()
    # The first one's last write under the photo's lock (drop-in telling nobody: the photo is not
    # ready; the render telling nobody: no match yet) lets the second one come and wait for it.
    module, name = (dropin, "_tell_new_photo") if first == "drop-in" else (catalog, "photo_matches_notify")
    inner = getattr(module, name)

    def with_a_competitor(**kwargs: Any) -> Any:
        if not started.is_set():
            started.set()
            competitor.start()
            wait_until_blocked(competitor_pid, competitor, "the second one")
        return inner(**kwargs)

    monkeypatch.setattr(module, name, with_a_competitor)
    # when: the first one commits, then the second
    if first == "drop-in":
        assert process(tenant_a.org, job_id).outcome == "succeeded"
    else:
        assert render(photo) == "ready"
    competitor.join(timeout=60)
    # then: neither failed, and Ann is told once, her alert armed once
    assert outcome == {"second": "ready" if first == "drop-in" else "succeeded"}
    assert new_photo_notifications(tenant_a.org) == [(ann.attendee_id, f"photo:{photo.pk}")]
    assert alert_generation(ann.attendee_id) == 1
