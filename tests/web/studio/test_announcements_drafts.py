"""A draft announcement's page: change it (event, title, body) or delete it; once it is sent,
neither is offered, and a form from a page opened before it was sent is refused (409)."""

from __future__ import annotations

import pytest

from apps.notifications.models import Announcement
from apps.notifications.services import announcement_create, announcement_send
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in, text

pytestmark = pytest.mark.django_db


def a_draft(studio: StudioPeople, *, title: str = "Photos son") -> Announcement:
    event = new_event(studio.org, title="City Marathon")
    with tenant_context(studio.org.pk):
        return announcement_create(
            tenant=studio.org, event_id=event.pk, title=title, body="Stay tuned.", actor=None, actor_label="test"
        )


def stored(announcement: Announcement) -> Announcement | None:
    with system_context("test: announcement"):
        return Announcement.objects.filter(pk=announcement.pk).first()


def audits(action: str) -> list[AuditLog]:
    with system_context("test: audit"):
        return list(AuditLog.objects.filter(action=action).order_by("id"))


def page_of(announcement: Announcement) -> str:
    return f"/studio/announcements/{announcement.pk}/"


def edit_form(draft: Announcement, **changes: str) -> dict[str, str]:
    """The edit form as its page renders it (each field and its hidden initial), with `changes`."""
    shown = {"event": str(draft.event_id), "title": draft.title, "body": draft.body}
    return {**shown, **{f"initial-{name}": value for name, value in shown.items()}, **changes}


def send(announcement: Announcement) -> None:
    with tenant_context(announcement.tenant_id):
        announcement_send(tenant_id=announcement.tenant_id, announcement_id=announcement.pk, actor_label="test")


def test_a_draft_is_corrected_from_its_page(studio: StudioPeople) -> None:
    # given: a draft with a typo, and its page
    draft = a_draft(studio)
    client = signed_in(studio.staff)  # staff manage announcements, as for composing
    page = client.get(page_of(draft))
    action = f"/studio/announcements/{draft.pk}/edit"
    assert "Edit draft" in text(page) and "Delete this draft" in text(page)
    form = {"nonce": form_nonce_on(page, action), **edit_form(draft, title="Photos soon")}
    # when: the corrected title is saved, twice (a double click)
    first = client.post(action, form)
    second = client.post(action, form)
    # then: one change, shown on its page, and audited once
    assert first.status_code == second.status_code == 303 and first["Location"] == page_of(draft)
    row = stored(draft)
    assert row is not None and (row.title, row.body) == ("Photos soon", "Stay tuned.")
    assert [a.data["fields"] for a in audits("announcement.update")] == [["title"]]
    shown = text(client.get(page_of(draft)))
    assert "<h1>Photos soon</h1>" in shown and "Draft saved. Send it when it is ready." in shown
    assert "Photos soon" in text(client.get("/studio/announcements/"))


def test_an_edit_from_an_older_tab_keeps_what_another_tab_changed(studio: StudioPeople) -> None:
    # given: the draft's page open in two tabs; the first tab changes the body
    draft = a_draft(studio)
    client = signed_in(studio.owner)
    action = f"/studio/announcements/{draft.pk}/edit"
    first, second = client.get(page_of(draft)), client.get(page_of(draft))
    body = "Photos are online tomorrow."
    assert (
        client.post(action, {"nonce": form_nonce_on(first, action), **edit_form(draft, body=body)}).status_code == 303
    )
    # when: the second tab fixes the title only
    fixed = {"nonce": form_nonce_on(second, action), **edit_form(draft, title="Photos soon")}
    assert client.post(action, fixed).status_code == 303
    # then: both changes stand
    row = stored(draft)
    assert row is not None and (row.title, row.body) == ("Photos soon", body)


def test_a_bad_edit_is_shown_again_and_writes_nothing(studio: StudioPeople, other_studio: StudioPeople) -> None:
    draft = a_draft(studio)
    theirs = new_event(other_studio.org)
    client = signed_in(studio.owner)
    action = f"/studio/announcements/{draft.pk}/edit"
    empty = client.post(action, {"nonce": "a" * 24, **edit_form(draft, title="")})
    assert empty.status_code == 400 and "This field is required." in text(empty)
    foreign = client.post(action, {"nonce": "b" * 24, **edit_form(draft, event=str(theirs.pk))})
    assert foreign.status_code == 400 and "Select a valid choice" in text(foreign)
    control = client.post(action, {"nonce": "c" * 24, **edit_form(draft, title="Photos\u202esoon")})
    assert control.status_code == 400 and 'id="announcementedit_title"' in text(control)
    row = stored(draft)
    assert row is not None and row.title == "Photos son" and audits("announcement.update") == []


def test_a_draft_is_deleted_from_its_page_and_leaves_the_list(studio: StudioPeople) -> None:
    # given: two drafts, and the page of the one written by mistake
    keep, draft = a_draft(studio, title="Keep me"), a_draft(studio, title="Wrong one")
    client = signed_in(studio.owner)
    action = f"/studio/announcements/{draft.pk}/delete"
    nonce = form_nonce_on(client.get(page_of(draft)), action)
    # when: Delete is pressed twice (a double click)
    first = client.post(action, {"nonce": nonce})
    second = client.post(action, {"nonce": nonce})
    # then: both land on the list, which no longer shows it; the other draft stays
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"] == "/studio/announcements/"
    assert stored(draft) is None and stored(keep) is not None
    listing = text(client.get("/studio/announcements/"))
    assert "Wrong one" not in listing and "Keep me" in listing and "Draft deleted." in listing
    # and: the delete is audited once, and the draft's page is gone
    assert [a.data["title"] for a in audits("announcement.delete")] == ["Wrong one"]
    assert client.get(page_of(draft)).status_code == 404
    # and: a fresh form for it finds nothing, saying so
    again = client.post(action, {"nonce": "f" * 24})
    assert again.status_code == 404 and "a deleted draft is gone for good" in text(again)


def test_a_sent_announcement_offers_no_edit_nor_delete(studio: StudioPeople) -> None:
    draft = a_draft(studio)
    send(draft)
    page = text(signed_in(studio.owner).get(page_of(draft)))
    assert "Edit draft" not in page and "Delete this draft" not in page
    assert (
        f"/studio/announcements/{draft.pk}/edit" not in page and f"/studio/announcements/{draft.pk}/delete" not in page
    )


@pytest.mark.parametrize("kind", ["edit", "delete"])
def test_a_form_from_before_the_send_is_refused(studio: StudioPeople, kind: str) -> None:
    # given: the draft's page, opened before the draft was sent (from another tab, or the API)
    draft = a_draft(studio)
    client = signed_in(studio.owner)
    action = f"/studio/announcements/{draft.pk}/{kind}"
    nonce = form_nonce_on(client.get(page_of(draft)), action)
    send(draft)
    # when: its edit or delete is sent
    form = {"nonce": nonce, **(edit_form(draft, title="Too late") if kind == "edit" else {})}
    response = client.post(action, form)
    # then: 409, the page shows the announcement as it went out and says why; nothing written
    assert response.status_code == 409
    page = text(response)
    assert "Announcement already sent" in page and "only a draft can be changed or deleted" in page
    assert "<h1>Photos son</h1>" in page and "Delete this draft" not in page
    row = stored(draft)
    assert row is not None and row.title == "Photos son"
    assert audits("announcement.update") == audits("announcement.delete") == []


def test_photographers_may_neither_edit_nor_delete(studio: StudioPeople) -> None:
    draft = a_draft(studio)
    client = signed_in(studio.photographer)
    edit = client.post(f"/studio/announcements/{draft.pk}/edit", {"nonce": "a" * 24, **edit_form(draft, title="X")})
    delete = client.post(f"/studio/announcements/{draft.pk}/delete", {"nonce": "b" * 24})
    assert edit.status_code == delete.status_code == 403
    row = stored(draft)
    assert row is not None and row.title == "Photos son"


def test_another_studios_draft_is_not_found(studio: StudioPeople, other_studio: StudioPeople) -> None:
    theirs = a_draft(other_studio)
    client = signed_in(studio.owner)
    edit = client.post(f"/studio/announcements/{theirs.pk}/edit", {"nonce": "a" * 24, **edit_form(theirs, title="X")})
    delete = client.post(f"/studio/announcements/{theirs.pk}/delete", {"nonce": "b" * 24})
    assert edit.status_code == delete.status_code == 404
    row = stored(theirs)
    assert row is not None and row.title == "Photos son"
