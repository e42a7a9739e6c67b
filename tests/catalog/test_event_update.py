"""Editing an event (`apps.catalog.events.event_update`, `PATCH /api/v1/events/{id}`): its
rules (slug kept, access code matching visibility, a new code relocking shop sessions), its
audit rows, the visibility check constraint, and the API's idempotency, roles and isolation."""

from __future__ import annotations

import datetime
import threading
import uuid
from typing import Any, cast

import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.db import IntegrityError, connection, transaction
from django.test import Client

from apps.catalog.errors import EventNotFound
from apps.catalog.events import EVENT_UPDATED
from apps.catalog.models import Event, Photo
from apps.catalog.products import Actor
from apps.catalog.services import event_update
from apps.core.problems import InvalidInput
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import EventFactory, PhotoFactory
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked
from tests.web.shop.conftest import make_ready

pytestmark = pytest.mark.django_db

OLD_CODE = "old-secret"
NEW_CODE = "new-secret"


def an_event(bundle: TenantBundle, **fields: Any) -> Event:
    return cast(Event, EventFactory(tenant=bundle.org, **fields))


def a_protected_event(bundle: TenantBundle, code: str = OLD_CODE, **fields: Any) -> Event:
    return an_event(bundle, visibility=Event.Visibility.ACCESS_CODE, access_code_hash=make_password(code), **fields)


def reload(event: Event) -> Event:
    with tenant_context(event.tenant_id):
        return Event.objects.get(pk=event.pk)


def audits(event: Event) -> list[AuditLog]:
    with tenant_context(event.tenant_id):
        return list(AuditLog.objects.filter(target_type="event", target_id=str(event.pk)).order_by("id"))


def owner(bundle: TenantBundle) -> Actor:
    return Actor.member(bundle.owner)


# --- the service --------------------------------------------------------------------------


def test_title_and_date_change_the_slug_stays_and_one_audit_row_names_them(tenant_a: TenantBundle) -> None:
    # given: a public event
    event = an_event(tenant_a, title="Marathon", slug="marathon", date=datetime.date(2026, 5, 17))
    # when: the owner renames and moves it
    updated = event_update(
        tenant_id=tenant_a.org.pk,
        event_id=event.pk,
        title="City Marathon",
        date=datetime.date(2026, 6, 1),
        actor=owner(tenant_a),
    )
    # then: stored, the slug (the shop's link) unchanged, and one audit row naming both fields
    row = reload(event)
    assert (row.title, row.date, row.slug, row.visibility) == (
        "City Marathon",
        datetime.date(2026, 6, 1),
        "marathon",
        "public",
    )
    assert updated.title == "City Marathon"
    [audit] = audits(event)
    assert audit.action == EVENT_UPDATED
    assert audit.data["fields"] == ["title", "date"]
    assert (audit.actor_user_id, audit.actor_label) == (tenant_a.owner.pk, f"user:{tenant_a.owner.pk}")


def test_a_date_outside_the_event_years_is_refused_and_the_bounds_are_taken(tenant_a: TenantBundle) -> None:
    event = an_event(tenant_a)
    # when: a year typo moves the event to year 1 or 9999 / then: refused, naming the date
    for typo in (datetime.date(1, 1, 1), datetime.date(1899, 12, 31), datetime.date(9999, 12, 31)):
        with pytest.raises(InvalidInput) as refused:
            event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, date=typo, actor=owner(tenant_a))
        assert "date" in refused.value.extra["errors"]
    assert reload(event).date == event.date and audits(event) == []
    # when: the first and last days of the range / then: each is taken
    for bound in (datetime.date(1900, 1, 1), datetime.date(2100, 12, 31)):
        event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, date=bound, actor=owner(tenant_a))
        assert reload(event).date == bound


def test_switching_to_access_code_needs_a_code_and_hashes_it(tenant_a: TenantBundle) -> None:
    event = an_event(tenant_a)
    # when: protected without a code, with one that is too short, all spaces, or that begins or
    # ends with white space (shoppers would not type it)
    for code in (None, "abc", "    ", "code ", "\tcode"):
        with pytest.raises(InvalidInput) as refused:
            event_update(
                tenant_id=tenant_a.org.pk,
                event_id=event.pk,
                visibility="access_code",
                access_code=code,
                actor=owner(tenant_a),
            )
        assert "access_code" in refused.value.extra["errors"]
    # then: nothing was written
    assert (reload(event).visibility, reload(event).access_code_hash) == ("public", "")
    assert audits(event) == []
    # when: with a good code
    event_update(
        tenant_id=tenant_a.org.pk,
        event_id=event.pk,
        visibility="access_code",
        access_code=NEW_CODE,
        actor=owner(tenant_a),
    )
    # then: only a password hash of it is stored, and the audit row names the fields, not the code
    row = reload(event)
    assert row.visibility == "access_code"
    assert row.access_code_hash != NEW_CODE and check_password(NEW_CODE, row.access_code_hash)
    [audit] = audits(event)
    assert audit.data["fields"] == ["visibility", "access_code"]
    assert NEW_CODE not in str(audit.data) and row.access_code_hash not in str(audit.data)


def test_switching_to_public_clears_the_code(tenant_a: TenantBundle) -> None:
    event = a_protected_event(tenant_a)
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, visibility="public", actor=owner(tenant_a))
    row = reload(event)
    assert (row.visibility, row.access_code_hash) == ("public", "")
    assert [a.data["fields"] for a in audits(event)] == [["visibility"]]


@pytest.mark.parametrize("visibility", [None, "public"])
def test_a_code_for_a_public_event_is_refused(tenant_a: TenantBundle, visibility: str | None) -> None:
    event = a_protected_event(tenant_a) if visibility else an_event(tenant_a)
    before = reload(event)
    with pytest.raises(InvalidInput):
        event_update(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            visibility=visibility,
            access_code=NEW_CODE,
            actor=owner(tenant_a),
        )
    after = reload(event)
    assert (after.visibility, after.access_code_hash) == (before.visibility, before.access_code_hash)
    assert audits(event) == []


def test_a_new_code_replaces_the_old_one(tenant_a: TenantBundle) -> None:
    event = a_protected_event(tenant_a)
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, access_code=NEW_CODE, actor=owner(tenant_a))
    row = reload(event)
    assert check_password(NEW_CODE, row.access_code_hash)
    assert not check_password(OLD_CODE, row.access_code_hash)
    assert [a.data["fields"] for a in audits(event)] == [["access_code"]]


def test_no_code_or_the_same_code_keeps_the_code_and_changes_nothing(tenant_a: TenantBundle) -> None:
    event = a_protected_event(tenant_a, title="Gala")
    stored = reload(event).access_code_hash
    actor = owner(tenant_a)
    # when: the same values again, with no code, with the current code, and visibility restated
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, title="Gala", actor=actor)
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, access_code=OLD_CODE, actor=actor)
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, visibility="access_code", actor=actor)
    # then: the very same hash, and no audit row
    assert reload(event).access_code_hash == stored
    assert audits(event) == []


def test_an_update_without_any_field_or_with_bad_values_is_refused(tenant_a: TenantBundle) -> None:
    event = an_event(tenant_a, title="Gala")
    for fields in ({}, {"title": "  "}, {"title": "x" * 201}, {"visibility": "secret"}):
        with pytest.raises(InvalidInput):
            event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=owner(tenant_a), **fields)
    assert reload(event).title == "Gala" and audits(event) == []


def test_another_tenants_event_is_not_found(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    event = an_event(tenant_a, title="Gala")
    with pytest.raises(EventNotFound):
        event_update(tenant_id=tenant_b.org.pk, event_id=event.pk, title="Stolen", actor=owner(tenant_b))
    assert reload(event).title == "Gala" and audits(event) == []


@pytest.mark.parametrize(
    ("visibility", "code_hash"),
    [("public", "pbkdf2_sha256$1$salt$hash"), ("access_code", "")],
)
def test_the_constraint_refuses_a_code_that_does_not_match_the_visibility(
    tenant_a: TenantBundle, visibility: str, code_hash: str
) -> None:
    # given: an event whose visibility and stored hash disagree, written past the service
    event = a_protected_event(tenant_a) if visibility == "public" else an_event(tenant_a)
    # then: PostgreSQL refuses the row
    with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError) as refused, transaction.atomic():
        Event.objects.filter(pk=event.pk).update(visibility=visibility, access_code_hash=code_hash)
    assert "catalog_event_access_code_matches_visibility" in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_edits_serialise_on_the_row_lock_and_audit_once(tenant_a: TenantBundle) -> None:
    # given: editor A has renamed the event in a transaction that has not committed yet
    event = an_event(tenant_a, title="Gala")
    actor = owner(tenant_a)
    a_updated, a_release = threading.Event(), threading.Event()
    b_pid: list[int] = []
    errors: list[Exception] = []

    def editor_a() -> None:
        try:
            with transaction.atomic():
                event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, title="Winter Gala", actor=actor)
                a_updated.set()
                assert a_release.wait(120)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
            a_updated.set()
        finally:
            connection.close()

    def editor_b() -> None:
        try:
            b_pid.append(backend_pid())
            event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, title="Winter Gala", actor=actor)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=editor_a)
    a.start()
    assert a_updated.wait(60)
    # when: editor B sends the same change and has to wait for A's row lock
    b = threading.Thread(target=editor_b)
    b.start()
    wait_until_blocked(b_pid, b, "editor B's change")
    a_release.set()
    a.join(60)
    b.join(60)
    # then: B saw A's committed title, changed nothing, and the change is audited once
    assert errors == []
    assert reload(event).title == "Winter Gala"
    assert [x.data["fields"] for x in audits(event)] == [["title"]]


# --- the shop forgets a session's unlock when the code changes ------------------------------


def test_a_new_code_locks_out_a_shopper_session_that_unlocked_the_old_one(tenant_a: TenantBundle) -> None:
    # given: a protected event with a ready photo, unlocked in a shopper's session
    event = a_protected_event(tenant_a, slug="private-gala")
    photo = make_ready(cast(Photo, PhotoFactory(event=event, image_width=64, image_height=48)))
    gallery = f"/s/{tenant_a.org.slug}/{event.slug}/"
    photo_page = f"{gallery}photos/{photo.pk}/"
    shopper = Client()
    assert shopper.post(gallery, {"code": OLD_CODE}).status_code == 303
    assert shopper.get(photo_page).status_code == 200
    # when: the studio gives the event a new code
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, access_code=NEW_CODE, actor=owner(tenant_a))
    # then: that session sees the code form again, never the photo
    locked = shopper.get(gallery)
    assert 'name="code"' in locked.content.decode()
    assert photo.public_token.hex not in locked.content.decode()
    assert shopper.get(photo_page).status_code == 403
    # and: the old code no longer opens it, the new one does
    assert shopper.post(gallery, {"code": OLD_CODE}).status_code == 403
    assert shopper.post(gallery, {"code": NEW_CODE}).status_code == 303
    assert shopper.get(photo_page).status_code == 200


def test_edits_that_keep_the_code_keep_the_shopper_unlocked(tenant_a: TenantBundle) -> None:
    event = a_protected_event(tenant_a, slug="private-gala")
    gallery = f"/s/{tenant_a.org.slug}/{event.slug}/"
    shopper = Client()
    assert shopper.post(gallery, {"code": OLD_CODE}).status_code == 303
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, title="Renamed Gala", actor=owner(tenant_a))
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, access_code=OLD_CODE, actor=owner(tenant_a))
    page = shopper.get(gallery).content.decode()
    assert "Renamed Gala" in page and 'name="code"' not in page


def test_public_then_protected_again_relocks_even_with_the_same_code(tenant_a: TenantBundle) -> None:
    event = a_protected_event(tenant_a, slug="private-gala")
    gallery = f"/s/{tenant_a.org.slug}/{event.slug}/"
    shopper = Client()
    assert shopper.post(gallery, {"code": OLD_CODE}).status_code == 303
    actor = owner(tenant_a)
    event_update(tenant_id=tenant_a.org.pk, event_id=event.pk, visibility="public", actor=actor)
    assert 'name="code"' not in shopper.get(gallery).content.decode()
    event_update(
        tenant_id=tenant_a.org.pk, event_id=event.pk, visibility="access_code", access_code=OLD_CODE, actor=actor
    )
    assert 'name="code"' in shopper.get(gallery).content.decode()


# --- the API --------------------------------------------------------------------------------


def patch(client: Any, url: str, body: Any, *, key: str | None = None) -> Any:
    return client.patch(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json", response.content
    return cast(dict[str, Any], response.json())


def test_api_patches_an_event_once_and_replays_the_answer(tenant_a: TenantBundle) -> None:
    event = an_event(tenant_a, title="Gala", slug="gala")
    client = tenant_a.client()
    url = f"/api/v1/events/{event.pk}"
    body = {"title": "Winter Gala", "visibility": "access_code", "access_code": NEW_CODE}
    # when: the same PATCH is sent twice with one key, then another body with that key
    first = patch(client, url, body, key="edit-1")
    again = patch(client, url, body, key="edit-1")
    other = patch(client, url, {"title": "Other"}, key="edit-1")
    # then: applied once, the replay is the same answer, the other body is refused
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == client.get(url).json()
    assert first.json()["title"] == "Winter Gala" and first.json()["slug"] == "gala"
    assert first.json()["visibility"] == "access_code" and "access_code" not in first.json()
    assert other.status_code == 422
    [audit] = audits(event)
    assert audit.data["fields"] == ["title", "visibility", "access_code"]
    assert audit.actor_label.startswith("api_key:") and audit.actor_user_id is None
    assert check_password(NEW_CODE, reload(event).access_code_hash)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"slug": "new-slug"},
        {"title": ""},
        {"title": 5},
        {"date": "17 May"},
        {"visibility": "secret"},
        {"visibility": "access_code"},
        {"access_code": NEW_CODE},
    ],
)
def test_api_refuses_bad_input_with_a_400_problem_and_writes_nothing(tenant_a: TenantBundle, body: Any) -> None:
    event = an_event(tenant_a, title="Gala", slug="gala")
    response = patch(tenant_a.client(), f"/api/v1/events/{event.pk}", body)
    assert response.status_code == 400
    assert problem(response)["status"] == 400
    row = reload(event)
    assert (row.title, row.slug, row.visibility, row.access_code_hash) == ("Gala", "gala", "public", "")
    assert audits(event) == []


def test_api_without_an_idempotency_key_is_refused(tenant_a: TenantBundle) -> None:
    event = an_event(tenant_a, title="Gala")
    response = tenant_a.client().patch(f"/api/v1/events/{event.pk}", {"title": "New"}, format="json")
    assert response.status_code == 400
    assert problem(response)["type"] == "/problems/idempotency-key-missing"
    assert reload(event).title == "Gala"


@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("photographer", 403), ("staff", 403)])
def test_api_only_owners_and_api_keys_edit_events(
    tenant_a: TenantBundle, member_client: Any, role: str, status: int
) -> None:
    event = an_event(tenant_a, title="Gala")
    client, user = member_client(tenant_a.org, role)
    response = patch(client, f"/api/v1/events/{event.pk}", {"title": "New"})
    assert response.status_code == status
    assert reload(event).title == ("New" if status == 200 else "Gala")
    assert [(a.actor_user_id, a.actor_label) for a in audits(event)] == (
        [(user.pk, f"user:{user.pk}")] if status == 200 else []
    )


def test_api_another_tenants_or_an_unknown_event_is_a_404(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    event = an_event(tenant_a, title="Gala")
    other = tenant_b.client()
    for event_id in (event.pk, 10**12):
        response = patch(other, f"/api/v1/events/{event_id}", {"title": "Stolen"})
        assert response.status_code == 404
        assert problem(response)["type"].endswith("event-not-found")
    assert reload(event).title == "Gala" and audits(event) == []
