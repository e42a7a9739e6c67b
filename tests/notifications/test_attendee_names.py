"""An attendee's name greets them in e-mails ("Hello …"): like an announcement's title, it may
hold no control characters (a line break would start a new line of the e-mail) and no
text-direction overrides (they reorder the text around it). The studio's attendees API and the
dashboard's attendees form refuse such a name, naming where it is, and write nothing; the drop-in
selfie API, which registers attendees too, is in tests/dropin/test_selfie_names.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apps.notifications.models import Attendee
from apps.tenancy.context import system_context, tenant_context
from tests.factories.catalog import EventFactory
from tests.web.studio.conftest import form_nonce_on, signed_in, text

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "Control characters (including text-direction overrides) are not allowed."

BAD_NAMES = [
    "line1\nline2\u202e",  # the QA walkthrough's: a line break and a right-to-left override
    "\u202eevil",  # right-to-left override
    "Ann \u2067Isolate",  # right-to-left isolate
    "Ann\x07",  # a bell
    "Ann\x1b[31m",  # a terminal escape
]


def an_event(org: Any) -> Any:
    with tenant_context(org.pk):
        return EventFactory(tenant=org)


def names() -> dict[str, str]:
    with system_context("test: attendees"):
        return dict(Attendee.objects.values_list("email", "name"))


def register(api: Any, event_id: int, *attendees: dict[str, Any]) -> Any:
    return api.post(
        f"/api/v1/events/{event_id}/attendees",
        {"attendees": list(attendees)},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_api_refuses_a_name_with_control_or_direction_characters_and_writes_nothing(
    tenant_a: Any, name: str
) -> None:
    # given: an event
    event = an_event(tenant_a.org)
    # when: a well-named attendee and one with a bad name are registered in one request
    response = register(
        tenant_a.client(),
        event.pk,
        {"email": "ann@example.com", "name": "Ann"},
        {"email": "eve@example.com", "name": name},
    )
    # then: a 400 problem naming the second attendee's name; nobody is registered
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == {"attendees[1].name": [REFUSED]}
    assert problem["detail"].startswith("attendees[1].name: Control characters")
    assert names() == {}


def test_the_api_keeps_a_known_attendees_name_when_a_new_one_is_refused(tenant_a: Any) -> None:
    # given: Ann, registered by name
    event = an_event(tenant_a.org)
    api = tenant_a.client()
    assert register(api, event.pk, {"email": "ann@example.com", "name": "Ann Example"}).status_code == 200
    # when: her name is sent again with a right-to-left override
    response = register(api, event.pk, {"email": "ann@example.com", "name": "Ann \u202eelpmaxE"})
    # then: refused; her name stays as it was
    assert response.status_code == 400 and "attendees[0].name" in response.json()["errors"]
    assert names() == {"ann@example.com": "Ann Example"}


def test_the_api_takes_names_in_any_script_with_emoji_and_soft_hyphens(tenant_a: Any) -> None:
    # given: names a person may really have (Arabic, an emoji with its zero-width joiner, a soft hyphen)
    event = an_event(tenant_a.org)
    people = {
        "a@example.com": "\u0644\u064a\u0644\u0649",
        "b@example.com": "Bea \U0001f469\u200d\U0001f4bb",
        "c@example.com": "Con\u00adstance",
        "d@example.com": "",
    }
    # when: they are registered
    response = register(tenant_a.client(), event.pk, *({"email": e, "name": n} for e, n in people.items()))
    # then: all of them, as given
    assert response.status_code == 200, response.content
    assert names() == people


def test_the_studio_form_names_the_line_with_a_bad_name_and_writes_nothing(tenant_a: Any) -> None:
    # given: the attendees page of an event
    event = an_event(tenant_a.org)
    action = f"/studio/events/{event.pk}/attendees"
    owner = signed_in(tenant_a.owner)
    page = owner.get(action)
    # when: two lines are pasted, the second's name holding a bell and a right-to-left override
    refused = owner.post(
        action,
        {"nonce": form_nonce_on(page, action), "lines": "ann@example.com, Ann\neve@example.com, Eve\x07\u202elive"},
    )
    # then: the form says which line and why, on the attendees field; nobody is registered
    assert refused.status_code == 400
    assert f"Line 2 (name): {REFUSED}" in text(refused)
    assert f"Line 2 (name): {REFUSED}" in refused.context["form"].errors["lines"]
    assert names() == {}
