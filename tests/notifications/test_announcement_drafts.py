"""A draft announcement can be changed (PATCH) and deleted (DELETE) through the API; one that is
sending or sent cannot (409, nothing written), also when its send commits while the change waits
for the announcement's row (two real connections)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.notifications.models import Announcement, Notification
from apps.notifications.services import (
    announcement_create,
    announcement_fanout,
    announcement_send,
    announcement_update,
)
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked
from tests.notifications.helpers import event_with_attendees

pytestmark = pytest.mark.django_db(transaction=True)


def call(client: Any, method: str, path: str, body: Any = None, *, key: str | None = None) -> Any:
    """`method` `path` with a JSON `body` (none: an empty body) and an Idempotency-Key (a fresh one
    unless given; "" sends none)."""
    headers = {} if key == "" else {"HTTP_IDEMPOTENCY_KEY": key or str(uuid.uuid4())}
    data = b"" if body is None else json.dumps(body).encode()
    return client.generic(method, path, data, "application/json", **headers)


def a_draft(org: Any, *, consenting: int = 1, title: str = "Photos soon") -> Announcement:
    event, _ = event_with_attendees(org, consenting=consenting)
    with tenant_context(org.pk):
        return announcement_create(
            tenant=org, event_id=event.pk, title=title, body="Stay tuned.", actor=None, actor_label="test"
        )


def stored(announcement: Announcement) -> Announcement | None:
    with system_context("test: announcement"):
        return Announcement.objects.filter(pk=announcement.pk).first()


def audits(announcement: Announcement, action: str) -> list[AuditLog]:
    with system_context("test: audit"):
        return list(AuditLog.objects.filter(action=action, target_id=str(announcement.pk)).order_by("id"))


def path_of(announcement: Announcement) -> str:
    return f"/api/v1/announcements/{announcement.pk}"


def test_a_draft_is_changed_and_the_change_is_audited(tenant_a: TenantBundle) -> None:
    # given: a draft with a typo, and a second event of the studio
    draft = a_draft(tenant_a.org, title="Photos son")
    other_event, _ = event_with_attendees(tenant_a.org, consenting=0)
    api = tenant_a.client()
    # when: its title and event are changed
    response = call(api, "PATCH", path_of(draft), {"title": "Photos soon", "event_id": other_event.pk}, key="fix-1")
    # then: the answer and the row say so, the body is kept, and one audit row names the fields
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Photos soon" and response.json()["status"] == "draft"
    assert response.json()["event_id"] == other_event.pk
    row = stored(draft)
    assert row is not None and (row.title, row.event_id, row.body) == ("Photos soon", other_event.pk, "Stay tuned.")
    [audit] = audits(draft, "announcement.update")
    assert audit.data["fields"] == ["event", "title"] and audit.actor_label.startswith("api_key:")
    # and: the same key replays the answer without a second change or audit row
    again = call(api, "PATCH", path_of(draft), {"title": "Photos soon", "event_id": other_event.pk}, key="fix-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert len(audits(draft, "announcement.update")) == 1
    # and: the list and the detail show the new title
    assert api.get(path_of(draft)).json()["title"] == "Photos soon"
    assert [a["title"] for a in api.get("/api/v1/announcements").json()["results"]] == ["Photos soon"]


def test_a_change_to_what_the_draft_already_says_writes_nothing(tenant_a: TenantBundle) -> None:
    draft = a_draft(tenant_a.org)
    response = call(tenant_a.client(), "PATCH", path_of(draft), {"title": draft.title, "body": draft.body})
    assert response.status_code == 200 and response.json()["title"] == draft.title
    assert audits(draft, "announcement.update") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "Hello\nthere"}, "title"),  # the e-mail's subject: no line break
        ({"body": "Stay \u202etuned"}, "body"),  # a text-direction override
        ({"body": ""}, "body"),
        ({"event_id": 0}, "event_id"),
        ({"event_id": "x"}, "event_id"),
        ({"title": "Hi", "send_now": True}, "send_now"),  # a field the operation does not take
    ],
)
def test_bad_changes_are_refused_and_write_nothing(tenant_a: TenantBundle, body: Any, field: str) -> None:
    draft = a_draft(tenant_a.org)
    response = call(tenant_a.client(), "PATCH", path_of(draft), body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    row = stored(draft)
    assert row is not None and (row.title, row.body, row.event_id) == (draft.title, draft.body, draft.event_id)
    assert audits(draft, "announcement.update") == []


def test_moving_a_draft_to_another_studios_event_is_refused(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    draft = a_draft(tenant_a.org)
    theirs, _ = event_with_attendees(tenant_b.org, consenting=0)
    response = call(tenant_a.client(), "PATCH", path_of(draft), {"event_id": theirs.pk})
    assert response.status_code == 400 and response.json()["type"] == "/problems/unknown-event"
    assert stored(draft).event_id == draft.event_id  # type: ignore[union-attr]


def test_a_draft_is_deleted_audited_and_no_longer_listed(tenant_a: TenantBundle) -> None:
    # given: two drafts
    keep, draft = a_draft(tenant_a.org, title="Keep me"), a_draft(tenant_a.org, title="Wrong one")
    api = tenant_a.client()
    # when: one is deleted
    response = call(api, "DELETE", path_of(draft), key="delete-1")
    # then: 204, it is gone from the list and its own URL, the other stays, and the delete is audited
    assert response.status_code == 204 and response.content == b""
    assert stored(draft) is None and stored(keep) is not None
    assert [a["title"] for a in api.get("/api/v1/announcements").json()["results"]] == ["Keep me"]
    missing = api.get(path_of(draft))
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/announcement-not-found"
    [audit] = audits(draft, "announcement.delete")
    assert audit.data == {"event_id": draft.event_id, "title": "Wrong one"}
    # and: a retry with the same key replays the 204; a new request is a 404 problem
    replay = call(api, "DELETE", path_of(draft), key="delete-1")
    assert replay.status_code == 204 and replay["Idempotent-Replayed"] == "true"
    assert call(api, "DELETE", path_of(draft)).status_code == 404
    assert len(audits(draft, "announcement.delete")) == 1


def test_changes_and_deletes_need_an_idempotency_key(tenant_a: TenantBundle) -> None:
    draft = a_draft(tenant_a.org)
    for method, body in (("PATCH", {"title": "New"}), ("DELETE", None)):
        response = call(tenant_a.client(), method, path_of(draft), body, key="")
        assert response.status_code == 400 and response.json()["type"] == "/problems/idempotency-key-missing"
    row = stored(draft)
    assert row is not None and row.title == draft.title


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_a_sent_announcement_is_neither_changed_nor_deleted(tenant_a: TenantBundle, method: str) -> None:
    # given: an announcement that was sent and fanned out
    draft = a_draft(tenant_a.org, consenting=2)
    with tenant_context(tenant_a.org.pk):
        announcement_send(tenant_id=tenant_a.org.pk, announcement_id=draft.pk, actor_label="test")
        announcement_fanout(announcement_id=draft.pk)
    # when: it is changed or deleted
    response = call(tenant_a.client(), method, path_of(draft), {"title": "Too late"} if method == "PATCH" else None)
    # then: 409, a problem saying it was sent, and nothing written
    assert response.status_code == 409, response.content
    problem = response.json()
    assert problem["type"] == "/problems/announcement-already-sent"
    assert (
        problem["title"] == "Announcement already sent"
        and "only a draft can be changed or deleted" in problem["detail"]
    )
    row = stored(draft)
    assert row is not None and row.title == draft.title
    assert audits(draft, "announcement.update") == audits(draft, "announcement.delete") == []


def test_another_studios_draft_is_not_found_and_not_touched(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    theirs = a_draft(tenant_b.org)
    api = tenant_a.client()
    assert call(api, "PATCH", path_of(theirs), {"title": "Mine now"}).status_code == 404
    assert call(api, "DELETE", path_of(theirs)).status_code == 404
    row = stored(theirs)
    assert row is not None and row.title == theirs.title


def test_a_photographer_may_neither_change_nor_delete(tenant_a: TenantBundle) -> None:
    draft = a_draft(tenant_a.org)
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    client = APIClient()
    client.force_login(photographer)
    assert call(client, "PATCH", path_of(draft), {"title": "Mine"}).status_code == 403
    assert call(client, "DELETE", path_of(draft)).status_code == 403
    row = stored(draft)
    assert row is not None and row.title == draft.title


# --- a send racing the change ---------------------------------------------------------------


def _race(tenant: TenantBundle, draft: Announcement, method: str, body: Any) -> Any:
    """Send `draft` in a transaction that holds its row lock; while it holds it, `method` the
    draft through the API from a second thread (its own connection), which must wait for the
    lock; then commit the send. Returns the API's answer."""
    sent, release = threading.Event(), threading.Event()
    api_pid: list[int] = []
    answers: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            with tenant_context(tenant.org.pk), transaction.atomic():
                announcement_send(tenant_id=tenant.org.pk, announcement_id=draft.pk, actor_label="racing send")
                sent.set()
                assert release.wait(60)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
            sent.set()
        finally:
            connection.close()

    def change() -> None:
        try:
            api_pid.append(backend_pid())
            answers.append(call(tenant.client(), method, path_of(draft), body))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    assert sent.wait(60)
    changer = threading.Thread(target=change)
    changer.start()
    try:
        wait_until_blocked(api_pid, changer, f"the API's {method}")
    finally:
        release.set()
        sender.join(60)
        changer.join(60)
    assert errors == []
    return answers[0]


@pytest.mark.parametrize(("method", "body"), [("PATCH", {"title": "Changed meanwhile"}), ("DELETE", None)])
def test_a_change_waiting_for_a_send_is_refused_once_the_send_commits(
    tenant_a: TenantBundle, method: str, body: Any
) -> None:
    # given: a draft whose send holds its row, uncommitted
    draft = a_draft(tenant_a.org, consenting=2)
    # when: a PATCH or DELETE arrives meanwhile and waits; then the send commits
    answer = _race(tenant_a, draft, method, body)
    # then: 409, and the announcement that went out is the one that was sent, untouched
    assert answer.status_code == 409, answer.content
    assert answer.json()["type"] == "/problems/announcement-already-sent"
    row = stored(draft)
    assert row is not None and row.send_requested_at is not None and row.title == "Photos soon"
    assert audits(draft, "announcement.update") == audits(draft, "announcement.delete") == []
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=draft.pk)
    with system_context("test: notifications"):
        titles = set(Notification.objects.filter(dedupe_key=f"announcement:{draft.pk}").values_list("title", flat=True))
    assert titles == {"Photos soon"}


def test_a_send_waiting_for_a_change_sends_the_changed_text(tenant_a: TenantBundle) -> None:
    # given: a change to a draft that holds its row, uncommitted
    draft = a_draft(tenant_a.org, consenting=1)
    changed, release = threading.Event(), threading.Event()
    send_pid: list[int] = []
    errors: list[BaseException] = []

    def change() -> None:
        try:
            with tenant_context(tenant_a.org.pk), transaction.atomic():
                announcement_update(
                    tenant_id=tenant_a.org.pk, announcement_id=draft.pk, actor_label="t", title="Photos are up"
                )
                changed.set()
                assert release.wait(60)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            changed.set()
        finally:
            connection.close()

    def send() -> None:
        try:
            send_pid.append(backend_pid())
            response = call(tenant_a.client(), "POST", f"{path_of(draft)}/send")
            assert response.status_code == 202, response.content
            assert response.json()["title"] == "Photos are up"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    changer = threading.Thread(target=change)
    changer.start()
    assert changed.wait(60)
    # when: the send arrives meanwhile, waits for the row, and the change commits
    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until_blocked(send_pid, sender, "the API's send")
    finally:
        release.set()
        changer.join(60)
        sender.join(60)
    # then: what goes out is the changed text
    assert errors == []
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=draft.pk)
    with system_context("test: notifications"):
        titles = set(Notification.objects.filter(dedupe_key=f"announcement:{draft.pk}").values_list("title", flat=True))
    assert titles == {"Photos are up"}


# --- the schema -----------------------------------------------------------------------------


def test_the_schema_documents_change_and_delete() -> None:
    document = Client().get("/api/schema/?format=json").json()
    operations = document["paths"]["/api/v1/announcements/{announcement_id}"]
    patch, delete = operations["patch"], operations["delete"]
    ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/AnnouncementUpdateInput"
    component = document["components"]["schemas"]["AnnouncementUpdateInput"]
    assert set(component["properties"]) == {"event_id", "title", "body"} and "required" not in component
    assert component["additionalProperties"] is False
    assert patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("AnnouncementOutput")
    assert "content" not in delete["responses"]["204"] and "requestBody" not in delete
    for operation in (patch, delete):
        assert {"400", "404", "409"} <= set(operation["responses"])
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert headers["Idempotency-Key"]["required"] is True
