"""An attendee's name greets them in e-mails ("Hello …"): like an announcement's title, it may
hold no control characters (a line break would start a new line of the e-mail) and no
text-direction overrides (they reorder the text around it). The studio's attendees API and the
dashboard's attendees form refuse such a name, naming where it is, and write nothing; the drop-in
selfie API, which registers attendees too, is in tests/dropin/test_selfie_names.py. Names stored
before the rule are cleaned by a data migration (notifications 0004) with the same rule."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import pytest

from apps.notifications.models import Attendee
from apps.notifications.services import attendee_name_problem
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


# --- names stored before the rule: the data migration cleans them ----------------------------

CLEANING = importlib.import_module("apps.notifications.migrations.0004_attendee_names_cleaned")


@pytest.mark.parametrize(
    ("stored", "cleaned"),
    [
        ("line1\nline2\u202e", "line1 line2"),  # a line break separates, the override goes
        ("\u202eevil", "evil"),
        ("Ann \u2067Isolate", "Ann Isolate"),
        ("Ann\x07", "Ann"),
        ("Ann\x1b[31m", "Ann[31m"),
        ("  Ann\t\tExample \r\n", "Ann Example"),
        ("\x00\x01\u202c", ""),
        ("Zoë 👩\u200d💻", "Zoë 👩\u200d💻"),  # other format characters (a zero-width joiner) stay
    ],
)
def test_the_migration_cleans_a_name_with_the_rule_of_the_api(stored: str, cleaned: str) -> None:
    assert CLEANING.clean_name(stored) == cleaned
    assert attendee_name_problem(cleaned) == ""


def test_the_migration_refuses_exactly_what_the_api_refuses() -> None:
    # every character of the Basic Multilingual Plane, alone in a name and between two letters
    for code in range(1, 0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates are no text
        ch = chr(code)
        refused_by_api = attendee_name_problem(f"a{ch}b") != ""
        assert CLEANING.refused(ch) == refused_by_api, hex(code)
        assert attendee_name_problem(CLEANING.clean_name(f"a{ch}b")) == "", hex(code)


def test_the_migration_cleans_every_studios_stored_names_in_batches(tenant_a: Any, tenant_b: Any) -> None:
    from django.db import connection

    # given: attendees of two studios whose names were stored before the rule, and clean ones
    stored = {
        tenant_a.org: ["Ann\nExample", "Bob", "\u202eevil", "", "Cy  \x07 Dee"],
        tenant_b.org: ["Eve\u2066", "Fay Gee"],
    }
    for org, names_of_org in stored.items():
        event = an_event(org)
        with tenant_context(org.pk):
            for i, name in enumerate(names_of_org):
                Attendee.objects.create(tenant=org, event=event, email=f"p{i}@example.com", name=name)
    # when: the migration's update runs, two attendees a batch, outside any studio's context
    changed = CLEANING.clean_attendee_names_on(connection, batch=2)
    # then: every studio's refused names are cleaned; the others are left as they were
    with system_context("test: names"):
        after = sorted(Attendee.objects.values_list("tenant_id", "name"))
    assert after == sorted(
        [(tenant_a.org.pk, n) for n in ["Ann Example", "Bob", "evil", "", "Cy Dee"]]
        + [(tenant_b.org.pk, n) for n in ["Eve", "Fay Gee"]]
    )
    assert changed == 4
    # and: a second run finds nothing left to clean
    assert CLEANING.clean_attendee_names_on(connection, batch=2) == 0
