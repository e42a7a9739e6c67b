"""Editing an event from its dashboard page: the "Edit event" form (owners only), once per
rendered form, an empty access code keeping the current one, refusals shown in the form, and a
new code locking out shoppers who had entered the old one."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.test import Client

from apps.catalog.events import EVENT_UPDATED
from apps.catalog.models import Event
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.web.shop.conftest import a_photo
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in, text

pytestmark = pytest.mark.django_db

OLD_CODE = "old-secret"
NEW_CODE = "new-secret"


def edit_url(event: Event) -> str:
    return f"/studio/events/{event.pk}/edit"


def reload(event: Event) -> Event:
    with tenant_context(event.tenant_id):
        return Event.objects.get(pk=event.pk)


def audit_fields(event: Event) -> list[list[str]]:
    with tenant_context(event.tenant_id):
        rows = AuditLog.objects.filter(action=EVENT_UPDATED, target_type="event", target_id=str(event.pk))
        return [row.data["fields"] for row in rows.order_by("id")]


def protected(studio: StudioPeople, **fields: Any) -> Event:
    return new_event(
        studio.org, visibility=Event.Visibility.ACCESS_CODE, access_code_hash=make_password(OLD_CODE), **fields
    )


def edit_form(client: Client, event: Event, **changes: str) -> dict[str, str]:
    """The event page's edit form as a browser would send it: its current values (and, hidden,
    the values the page showed) and nonce, with `changes` typed in."""
    page = client.get(f"/studio/events/{event.pk}/")
    row = reload(event)
    shown = {"title": row.title, "date": row.date.isoformat(), "visibility": row.visibility}
    for name, value in shown.items():
        assert f'name="initial-{name}" value="{value}"' in text(page)
    form = {"nonce": form_nonce_on(page, edit_url(event)), **shown, "access_code": ""}
    return {**form, **{f"initial-{name}": value for name, value in shown.items()}, **changes}


def test_owner_edits_an_event_once_per_form_with_a_message(studio: StudioPeople) -> None:
    # given: the event page, which shows the form filled with the event's values
    event = new_event(studio.org, title="Marathon", slug="marathon")
    client = signed_in(studio.owner)
    page = text(client.get(f"/studio/events/{event.pk}/"))
    assert "Edit event" in page and 'value="Marathon"' in page
    form = edit_form(client, event, title="City Marathon", date="2026-06-01")
    # when: it is submitted twice (a double click)
    first = client.post(edit_url(event), form)
    second = client.post(edit_url(event), form)
    # then: one change, one audit row, back on the event page with a message
    assert first.status_code == second.status_code == 303
    assert first["Location"] == f"/studio/events/{event.pk}/"
    row = reload(event)
    assert (row.title, row.date.isoformat(), row.slug) == ("City Marathon", "2026-06-01", "marathon")
    assert audit_fields(event) == [["title", "date"]]
    after = text(client.get(first["Location"]))
    assert "Event “City Marathon” saved." in after


def test_a_stale_tab_saves_only_what_was_changed_in_it(studio: StudioPeople) -> None:
    # given: the event page open in two tabs
    event = new_event(studio.org, title="Marathon", slug="marathon")
    client = signed_in(studio.owner)
    tab_a = edit_form(client, event, title="City Marathon")
    tab_b = edit_form(client, event, date="2026-09-12")
    # when: the first tab saves a new title, then the second (still showing "Marathon") a new date
    assert client.post(edit_url(event), tab_a).status_code == 303
    assert client.post(edit_url(event), tab_b).status_code == 303
    # then: both changes stand: the second tab did not put the old title back
    row = reload(event)
    assert (row.title, row.date.isoformat()) == ("City Marathon", "2026-09-12")
    assert audit_fields(event) == [["title"], ["date"]]
    # and: a form sent with nothing changed writes nothing and says so
    response = client.post(edit_url(event), edit_form(client, event), follow=True)
    assert "Nothing was changed." in text(response) and len(audit_fields(event)) == 2


def test_an_empty_code_keeps_the_current_code(studio: StudioPeople) -> None:
    event = protected(studio, title="Gala")
    stored = reload(event).access_code_hash
    client = signed_in(studio.owner)
    response = client.post(edit_url(event), edit_form(client, event, title="Winter Gala"))
    assert response.status_code == 303
    row = reload(event)
    assert (row.title, row.visibility, row.access_code_hash) == ("Winter Gala", "access_code", stored)
    assert audit_fields(event) == [["title"]]


def test_switching_to_access_code_without_a_code_is_refused_in_the_form(studio: StudioPeople) -> None:
    event = new_event(studio.org, title="Gala")
    client = signed_in(studio.owner)
    response = client.post(edit_url(event), edit_form(client, event, visibility="access_code"))
    assert response.status_code == 400
    assert "At least 4 characters." in text(response)
    row = reload(event)
    assert (row.visibility, row.access_code_hash) == ("public", "")
    assert audit_fields(event) == []


def test_bad_input_re_renders_with_errors_and_writes_nothing(studio: StudioPeople) -> None:
    event = new_event(studio.org, title="Gala")
    client = signed_in(studio.owner)
    response = client.post(edit_url(event), edit_form(client, event, title="", date="17 May"))
    assert response.status_code == 400
    assert "This field is required." in text(response) and "Enter a valid date." in text(response)
    assert reload(event).title == "Gala" and audit_fields(event) == []


def test_switching_to_public_clears_the_code(studio: StudioPeople) -> None:
    event = protected(studio)
    client = signed_in(studio.owner)
    assert client.post(edit_url(event), edit_form(client, event, visibility="public")).status_code == 303
    row = reload(event)
    assert (row.visibility, row.access_code_hash) == ("public", "")


def test_a_new_code_from_the_dashboard_locks_out_shoppers_with_the_old_one(studio: StudioPeople) -> None:
    # given: a protected event with a photo, unlocked in a shopper's session
    event = protected(studio, slug="private-gala")
    photo = a_photo(event)
    gallery = f"/s/{studio.org.slug}/{event.slug}/"
    photo_page = f"{gallery}photos/{photo.pk}/"
    shopper = Client()
    assert shopper.post(gallery, {"code": OLD_CODE}).status_code == 303
    assert shopper.get(photo_page).status_code == 200
    # when: the owner types a new code into the edit form
    client = signed_in(studio.owner)
    assert client.post(edit_url(event), edit_form(client, event, access_code=NEW_CODE)).status_code == 303
    # then: the code is replaced, and the shopper must enter the new one
    assert check_password(NEW_CODE, reload(event).access_code_hash)
    assert audit_fields(event) == [["access_code"]]
    assert shopper.get(photo_page).status_code == 403
    assert 'name="code"' in text(shopper.get(gallery))
    assert shopper.post(gallery, {"code": NEW_CODE}).status_code == 303
    assert shopper.get(photo_page).status_code == 200


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_edit_events(studio: StudioPeople, role: str) -> None:
    event = new_event(studio.org, title="Gala")
    client = signed_in(getattr(studio, role))
    page = text(client.get(f"/studio/events/{event.pk}/"))
    assert "Edit event" not in page and edit_url(event) not in page
    body = {"nonce": "n" * 24, "title": "Mine", "date": "2026-06-01", "visibility": "public", "access_code": ""}
    assert client.post(edit_url(event), body).status_code == 403
    assert reload(event).title == "Gala" and audit_fields(event) == []


def test_another_studios_event_is_a_404(studio: StudioPeople, other_studio: StudioPeople) -> None:
    foreign = new_event(other_studio.org, title="Theirs")
    client = signed_in(studio.owner)
    body = {"nonce": "n" * 24, "title": "Mine", "date": "2026-06-01", "visibility": "public", "access_code": ""}
    assert client.post(edit_url(foreign), body).status_code == 404
    assert reload(foreign).title == "Theirs" and audit_fields(foreign) == []
