"""`POST /api/v1/events/{event_id}/attendees` documents what an attendee is.

Found by fuzzing the running API with schemathesis: the request schema described `attendees` as
an array of anything (`items: {}`), so data valid by the schema (`[null]`, `[1]`, `[{}]`) was
refused with 400, and an integrator reading the schema could not know that an attendee is an
object with a required `email`, an optional `name` and `email_consent`, and nothing else. The
schema now names the attendee component; what the API accepts and refuses is unchanged.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from apps.notifications.models import Attendee
from apps.tenancy.context import system_context, tenant_context
from tests.factories.catalog import EventFactory


def an_event(org: Any) -> Any:
    with tenant_context(org.pk):
        return EventFactory(tenant=org)


def test_the_schema_describes_an_attendee() -> None:
    # given: the published schema
    document = Client().get("/api/schema/?format=json").json()
    schemas = document["components"]["schemas"]
    # when: the attendees request body's items are resolved
    items = schemas["EventAttendeesInput"]["properties"]["attendees"]["items"]
    attendee = schemas[items["$ref"].rsplit("/", 1)[1]]
    # then: an object with a required e-mail and no other fields than the API takes
    assert attendee["type"] == "object"
    assert attendee["required"] == ["email"]
    assert set(attendee["properties"]) == {"email", "name", "email_consent"}
    assert attendee["properties"]["email"]["format"] == "email"
    assert attendee["additionalProperties"] is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("attendee", "error_path"),
    [
        (None, "attendees.0"),
        (1, "attendees.0.non_field_errors"),
        ({}, "attendees.0.email"),
        ({"email": "ann@example.com", "role": "vip"}, "attendees.0.role"),
        ({"email": "ann@example.com", "email_consent": "yes"}, "attendees.0.email_consent"),
    ],
)
def test_an_attendee_the_schema_refuses_is_a_400_naming_it_and_writes_nothing(
    tenant_a: Any, attendee: Any, error_path: str
) -> None:
    # given: an event
    event = an_event(tenant_a.org)
    # when: a valid attendee and a bad one are registered together
    response = tenant_a.client().post(
        f"/api/v1/events/{event.pk}/attendees",
        {"attendees": [attendee, {"email": "bob@example.com"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    # then: a 400 problem naming the bad attendee's field; nobody is registered
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert error_path in response.json()["errors"]
    with system_context("test: attendees"):
        assert not Attendee.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_email_twice_is_still_refused(tenant_a: Any) -> None:
    # given: an event
    event = an_event(tenant_a.org)
    # when: one address is registered twice in one request, in different cases
    response = tenant_a.client().post(
        f"/api/v1/events/{event.pk}/attendees",
        {"attendees": [{"email": "ann@example.com"}, {"email": " ANN@example.com"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    # then: refused, nothing written
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"attendees": ["Each e-mail may appear once per request."]}
    with system_context("test: attendees"):
        assert not Attendee.objects.exists()
