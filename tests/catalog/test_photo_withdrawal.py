"""A studio withdraws a photo: from the commit on it is not shown, sold, found by find me,
matched by drop-in or covered by bulk purchases; its cleanup deletes its matches, notifications,
face index and public files; a photo bought alone stays downloadable (fake face backend, real
Postgres, storage and Pillow)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import default_storage

from apps.catalog.errors import PhotoAlreadyWithdrawn
from apps.catalog.models import Photo, Product
from apps.catalog.products import Actor
from apps.catalog.selectors import public_event_photos
from apps.catalog.services import photo_generate_derivatives
from apps.catalog.withdrawal import PHOTO_WITHDRAWN_TOPIC, photo_withdraw, photo_withdrawn_cleanup
from apps.commerce.models import Entitlement
from apps.commerce.selectors import download_resolve, download_token, photos_covered
from apps.dropin.models import DropInJob, FaceMatch, PhotoFace, PhotoIndex
from apps.dropin.services import TOPIC_FACE_FORGET, dropin_job_process
from apps.notifications.models import Notification
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, empty_broker, post_checkout  # noqa: F401 - fixture by name
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_paid
from tests.dropin.helpers import an_event, enrolled_face, photo_of
from tests.factories.commerce import make_shop
from tests.fixtures import backend_pid, wait_until_blocked
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def withdraw_api(client: Any, photo_id: int, reason: str = "the runner asked us to take it down") -> Any:
    return client.post(
        f"/api/v1/photos/{photo_id}/withdraw", {"reason": reason}, format="json", HTTP_IDEMPOTENCY_KEY=new_key()
    )


def ready(photo: Photo) -> Photo:
    """Render the photo's real previews (as the worker would)."""
    assert photo_generate_derivatives(tenant_id=photo.tenant_id, photo_id=photo.pk) == "ready"
    with tenant_context(photo.tenant_id):
        return Photo.objects.get(pk=photo.pk)


def counts(org_id: int, photo_id: int) -> dict[str, int]:
    with tenant_context(org_id):
        return {
            "matches": FaceMatch.objects.filter(photo_id=photo_id).count(),
            "notifications": Notification.objects.filter(dedupe_key=f"photo:{photo_id}").count(),
            "faces": PhotoFace.objects.filter(photo_id=photo_id).count(),
            "indexes": PhotoIndex.objects.filter(photo_id=photo_id).count(),
        }


def test_a_withdrawn_photo_is_not_shown_or_sold_and_its_traces_are_cleaned_up(tenant_a: Any) -> None:
    # given: a photo of Ann, matched and indexed by drop-in, with its previews and a download
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"
    photo = ready(photo)
    assert counts(tenant_a.org.pk, photo.pk) == {"matches": 1, "notifications": 1, "faces": 1, "indexes": 1}
    assert [p.id for p in public_event_photos(tenant_slug=tenant_a.org.slug, event_slug=event.slug)] == [photo.pk]
    files = [photo.preview.name, photo.thumbnail.name]
    assert all(default_storage.exists(name) for name in files)
    # when: the studio withdraws it through the API
    response = withdraw_api(tenant_a.client(), photo.pk)
    # then: 200, withdrawn with its reason, no preview URL; audited; one cleanup message
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["withdrawn_reason"] == "the runner asked us to take it down" and body["withdrawn_at"]
    assert body["preview_url"] is None and body["thumbnail_url"] is None
    with system_context("test"):
        assert AuditLog.objects.filter(action="photo.withdraw", target_id=str(photo.pk)).count() == 1
        assert OutboxMessage.objects.filter(topic=PHOTO_WITHDRAWN_TOPIC).count() == 1
    # and: the public gallery no longer lists it
    assert public_event_photos(tenant_slug=tenant_a.org.slug, event_slug=event.slug) == []
    # when: the cleanup consumer runs (and its face-forget message)
    drain_outbox()
    # then: matches, notifications, face index and public files are gone; the backend forgets it
    assert counts(tenant_a.org.pk, photo.pk) == {"matches": 0, "notifications": 0, "faces": 0, "indexes": 0}
    assert not any(default_storage.exists(name) for name in files)
    assert default_storage.exists(photo.original.name)
    with system_context("test"):
        forgets = list(OutboxMessage.objects.filter(topic=TOPIC_FACE_FORGET, aggregate_id=str(photo.pk)))
    assert [m.payload["refs"] for m in forgets] == [["ann"]]
    # and: the consumer recorded that it ran to the end, so the lost-message sweep leaves it be
    with system_context("test"):
        [message] = OutboxMessage.objects.filter(topic=PHOTO_WITHDRAWN_TOPIC)
    assert InboxEntry.objects.filter(consumer="catalog.photo_withdrawn", message_id=message.pk).exists()
    # and: a second cleanup finds nothing more to do
    with tenant_context(tenant_a.org.pk):
        again = photo_withdrawn_cleanup(tenant_id=tenant_a.org.pk, photo_id=photo.pk)
    assert again == {"checkouts_closed": 0, "matches": 0, "notifications": 0, "faces": 0, "indexes": 0, "files": 0}


def test_withdrawal_refusals_write_nothing(tenant_a: Any, tenant_b: Any) -> None:
    shop = make_shop(org=tenant_a.org)
    assert withdraw_api(tenant_a.client(), shop.photo.pk, reason="  ").status_code == 400
    assert withdraw_api(tenant_b.client(), shop.photo.pk).status_code == 404
    assert withdraw_api(tenant_a.client(), shop.photo.pk).status_code == 200
    again = withdraw_api(tenant_a.client(), shop.photo.pk)
    assert again.status_code == 409 and again.json()["type"].endswith("/photo-already-withdrawn")
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=PHOTO_WITHDRAWN_TOPIC).count() == 1
        assert AuditLog.objects.filter(action="photo.withdraw").count() == 1


def test_no_new_product_sells_a_withdrawn_photo(tenant_a: Any) -> None:
    # given: a withdrawn photo
    shop = make_shop(org=tenant_a.org)
    assert withdraw_api(tenant_a.client(), shop.photo.pk).status_code == 200
    with tenant_context(tenant_a.org.pk):
        before = Product.objects.count()
    # when: a print of it is offered
    response = tenant_a.client().post(
        f"/api/v1/events/{shop.event.pk}/products",
        {"kind": "print", "photo_id": shop.photo.pk, "size": "A2", "stock_quantity": 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    # then: a 400 that says why, and no product
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["photo_id"] == ["This photo was withdrawn: it is not sold any more."]
    with tenant_context(tenant_a.org.pk):
        assert Product.objects.count() == before


def test_checkouts_refuse_a_withdrawn_photo_and_buyers_keep_what_they_bought_alone(tenant_a: Any) -> None:
    # given: a shop whose photo was bought alone (download), and the event's bulk product bought
    # in another order (one checkout refuses both: the bulk product includes the download)
    shop = make_shop(org=tenant_a.org)
    client = tenant_a.client()
    checkout_ids = []
    for product in (shop.download, shop.bulk):
        bought = post_checkout(client, checkout_body(shop, {"product": product.pk}))
        checkout_ids.append(bought.json()["id"])
        drain_outbox()
        assert deliver([sandbox_paid(checkout_ids[-1])]) == [200]
        drain_outbox()
    # when: the photo is withdrawn
    with tenant_context(tenant_a.org.pk):
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=shop.photo.pk, reason="wrong event", actor=Actor("t"))
        with pytest.raises(PhotoAlreadyWithdrawn):
            photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=shop.photo.pk, reason="again", actor=Actor("t"))
        alone = Entitlement.objects.get(checkout_id=checkout_ids[0], scope=Entitlement.Scope.PHOTO)
        bulk = Entitlement.objects.get(checkout_id=checkout_ids[1], scope=Entitlement.Scope.EVENT)
    # then: a new checkout of its download is refused; the bulk product alone still sells
    refused = post_checkout(client, checkout_body(shop, {"product": shop.download.pk}))
    assert refused.status_code == 400 and refused.json()["type"].endswith("/invalid-checkout-line")
    assert post_checkout(client, checkout_body(shop, {"product": shop.bulk.pk})).status_code == 201
    # and: the buyer of the photo alone still downloads it; the bulk purchase no longer covers it
    assert download_resolve(token=download_token(entitlement=alone, photo_id=shop.photo.pk)).storage_name
    assert photos_covered(entitlement=bulk) == []
    with pytest.raises(Exception, match="No such download"):
        download_resolve(token=download_token(entitlement=bulk, photo_id=shop.photo.pk))


def test_a_render_or_a_drop_in_run_after_the_withdrawal_writes_nothing(tenant_a: Any) -> None:
    # given: a photo of Ann whose render and drop-in job have not run yet
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    with tenant_context(tenant_a.org.pk):
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=photo.pk, reason="blurred", actor=Actor("t"))
    # when: they run late
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk) == "withdrawn"
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "skipped"
        job_status = DropInJob.objects.get(pk=job_id).status
        photo.refresh_from_db()
    # then: no previews, no matches, no notification, no index; the job is done
    assert photo.derivatives_status == "pending" and job_status == "succeeded"
    assert counts(tenant_a.org.pk, photo.pk) == {"matches": 0, "notifications": 0, "faces": 0, "indexes": 0}


def test_the_photo_row_refuses_a_withdrawal_without_its_reason(tenant_a: Any) -> None:
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    shop = make_shop(org=tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        with pytest.raises(IntegrityError), transaction.atomic():
            Photo.objects.filter(pk=shop.photo.pk).update(withdrawn_at=timezone.now())
        with pytest.raises(IntegrityError), transaction.atomic():
            Photo.objects.filter(pk=shop.photo.pk).update(withdrawn_reason="no time")


@pytest.fixture
def studio(tenant_a: Any) -> StudioPeople:
    from tests.web.studio.conftest import people_of

    return people_of(tenant_a)


def test_the_owner_withdraws_from_the_event_page_and_others_cannot(studio: StudioPeople) -> None:
    # given: an event with a photo bought alone once
    shop = make_shop(org=studio.org)
    checkout_id = post_checkout(studio.bundle.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    event_page = f"/studio/events/{shop.event.pk}/"
    action = f"/studio/events/{shop.event.pk}/photos/{shop.photo.pk}/withdraw"
    owner = signed_in(studio.owner)
    assert f'href="{action}"' in text(owner.get(event_page))
    # and: staff and photographers may not withdraw
    for member in (studio.staff, studio.photographer):
        assert signed_in(member).post(action, {"nonce": "n", "reason": "x"}).status_code == 403
    # when: the owner opens the page (it counts the buyer) and confirms with a reason, twice
    page = owner.get(action)
    assert page.status_code == 200 and "1 buyer bought this photo alone" in text(page)
    form = {"nonce": form_nonce_on(page, action), "reason": "the runner asked us to take it down"}
    first, second = owner.post(action, form), owner.post(action, form)
    # then: withdrawn once; the event page says so and offers no withdraw link
    assert (first.status_code, second.status_code) == (303, 303)
    assert first["Location"] == f"{event_page}#photos"
    with tenant_context(studio.org.pk):
        assert Photo.objects.get(pk=shop.photo.pk).withdrawn_reason == "the runner asked us to take it down"
    with system_context("test"):
        assert AuditLog.objects.filter(action="photo.withdraw", actor_user=studio.owner).count() == 1
    after = text(owner.get(event_page))
    assert "Withdrawn " in after and f'href="{action}"' not in after


def test_a_photo_withdrawn_while_its_drop_in_run_searches_gets_nothing_recorded(
    tenant_a: Any, monkeypatch: Any
) -> None:
    # given: a photo of Ann whose drop-in run is searching when the studio withdraws it
    from apps.dropin import services as dropin

    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    searching = dropin._match_and_index

    def withdrawn_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = searching(*args, **kwargs)
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=photo.pk, reason="taken down", actor=Actor("t"))
        return found

    monkeypatch.setattr(dropin, "_match_and_index", withdrawn_meanwhile)
    # when: the run records its results
    with tenant_context(tenant_a.org.pk):
        run = dropin_job_process(job_id=job_id)
    # then: the job is done, but no match, notification or index of the photo was written
    assert (run.outcome, run.matches, run.notified) == ("succeeded", 0, 0)
    assert counts(tenant_a.org.pk, photo.pk) == {"matches": 0, "notifications": 0, "faces": 0, "indexes": 0}


def test_a_withdrawal_while_a_drop_in_run_records_waits_for_it_and_then_cleans_up(
    tenant_a: Any, monkeypatch: Any
) -> None:
    # given: a photo of Ann whose drop-in run is inside its recording transaction when the studio
    # withdraws the photo from another connection
    import threading

    from django.db import DatabaseError, connection

    from apps.dropin import services as dropin

    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    photo, job_id = photo_of(tenant_a.org, event, ["ann"])
    outcome: dict[str, Any] = {}
    competitor_pid: list[int] = []

    def withdraw() -> None:
        try:
            competitor_pid.append(backend_pid())
            with tenant_context(tenant_a.org.pk):
                photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=photo.pk, reason="taken down", actor=Actor("t"))
            outcome["withdrawn"] = True
        except DatabaseError as exc:  # a deadlock would land here (or in the run)
            outcome["error"] = exc
        finally:
            connection.close()

    competitor = threading.Thread(target=withdraw)
    recording = dropin._index_store

    def index_store_with_a_competitor(**kwargs: Any) -> Any:
        competitor.start()
        # the withdrawal now waits on the photo's row lock (or deadlocks, before the fix)
        wait_until_blocked(competitor_pid, competitor, "the withdrawal")
        return recording(**kwargs)

    monkeypatch.setattr(dropin, "_index_store", index_store_with_a_competitor)
    # when: the run records, then the withdrawal goes through
    with tenant_context(tenant_a.org.pk):
        run = dropin_job_process(job_id=job_id)
    competitor.join(timeout=60)
    # then: neither failed; the run recorded its match, the withdrawal came after it
    assert outcome == {"withdrawn": True} and run.outcome == "succeeded" and run.matches == 1
    # and: the cleanup removes what the run wrote
    drain_outbox()
    assert counts(tenant_a.org.pk, photo.pk) == {"matches": 0, "notifications": 0, "faces": 0, "indexes": 0}


def test_a_withdrawn_photo_is_never_rendered_or_asked_to_render_again(tenant_a: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.catalog.services import photo_derivatives_requeue_stale

    # given: a photo still waiting for its previews, withdrawn, its render message long lost
    shop = make_shop(org=tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=shop.photo.pk, reason="wrong event", actor=Actor("t"))
        Photo.objects.filter(pk=shop.photo.pk).update(derivatives_requested_at=timezone.now() - timedelta(hours=1))
    # when: the stale-render sweep and a late render run
    with system_context("test"):
        requeued = photo_derivatives_requeue_stale(older_than_seconds=60)
    # then: it is not asked for again, and the render reads and writes nothing
    assert requeued == []
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=shop.photo.pk) == "withdrawn"
