"""What the runbooks (README "Operating it") tell operators to read in the admin is there.

Found following the runbooks: "Webhook event failed" sends the operator to "the admin's id
column" for `webhooks_resolve`, but the webhook events list showed only the provider's event id,
and its search found a row by that or the reference, not by its own id; "Outbox backlog growing"
and "Payouts" say to read a dead letter's or payout's `last_error` in the admin, which their
lists did not show. Now the events list shows each row's id (so does its page) and the search
finds a row by it, whatever else is typed; both lists have a `last_error` column (cut short,
whole on the row's page).
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.ledger.projection import projection_rebuild
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context
from tests.factories.tenancy import UserFactory
from tests.payouts.helpers import make_wallet

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "/admin/payments/webhookevent/"
# An error longer than a list cell shows; its end is only on the row's page.
LONG_ERROR = "ProviderError: the provider refused the call. " + "detail " * 60 + "END-OF-ERROR"


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def an_event(event_id: str, **fields: Any) -> WebhookEvent:
    with system_context("test: webhook event"):
        return WebhookEvent.objects.create(
            provider="sandbox",
            event_id=event_id,
            event_type="payment.paid",
            reference=f"ref-{event_id}",
            raw_body=b"{}",
            received_at=timezone.now(),
            **fields,
        )


def cells(page: str, column: str) -> list[str]:
    """The text of each list row's `column` cell (the admin marks each cell with field-<name>)."""
    found = re.findall(rf'<t[dh] class="field-{column}[^"]*">(.*?)</t[dh]>', page, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def readonly_value(page: str, field: str) -> str:
    """The text a row's page shows for a read-only `field`."""
    match = re.search(rf'<div class="form-row[^"]*field-{field}[^"]*">.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert match is not None, f"the page shows no {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", match[1])).strip()


# --- the webhook events' own id ---------------------------------------------------------------


def test_the_events_list_and_an_events_page_show_its_own_id(admin_client: Client) -> None:
    # given: an event
    event = an_event("evt_1")
    # when: the operator opens the events list and the event's page
    listed = admin_client.get(EVENTS).content.decode()
    page = admin_client.get(f"{EVENTS}{event.pk}/change/").content.decode()
    # then: both show the id `webhooks_resolve` takes, not only the provider's event id
    assert cells(listed, "id") == [str(event.pk)]
    assert readonly_value(page, "id") == str(event.pk)


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda pk: str(pk), id="as listed"),
        pytest.param(lambda pk: f"  {str(pk).upper()}  ", id="upper case, spaces around"),
        pytest.param(lambda pk: pk.hex, id="without dashes"),
    ],
)
def test_the_events_search_finds_an_event_by_its_own_id(admin_client: Client, typed: Any) -> None:
    # given: two events
    wanted, other = an_event("evt_wanted"), an_event("evt_other")
    # when: the operator searches for one's id
    listed = admin_client.get(EVENTS, {"q": typed(wanted.pk)})
    # then: that event alone is listed
    assert listed.status_code == 200
    assert cells(listed.content.decode(), "id") == [str(wanted.pk)]
    assert str(other.pk) not in listed.content.decode()


@pytest.mark.parametrize(
    ("typed", "finds_it"),
    [
        ("evt_wanted", True),  # the provider's event id still finds it
        ("not-a-uuid", False),
        ("12345", False),
        ("0190a6c2-1b2c-7d3e-8f40-12345678zzzz", False),  # shaped like an id, not one
        ("0190a6c2-1b2c-7d3e-8f40", False),  # the start of one
        ("%", False),
        ("\\", False),
        ("x" * 5000, False),
        ("'", True),  # Django reads a lone quote as an empty quoted term: every row
        ("evt\x00wanted", True),  # Django drops a search with a NUL character: every row
    ],
)
def test_the_events_search_answers_the_list_whatever_is_typed(admin_client: Client, typed: str, finds_it: bool) -> None:
    # given: an event
    event = an_event("evt_wanted")
    # when: the operator searches for text that is no id
    listed = admin_client.get(EVENTS, {"q": typed})
    # then: the list answers (no 500, no UUID asked of PostgreSQL), finding what the text finds
    assert listed.status_code == 200
    assert cells(listed.content.decode(), "id") == ([str(event.pk)] if finds_it else [])


def test_the_events_search_by_an_id_of_no_event_lists_nothing(admin_client: Client) -> None:
    an_event("evt_1")
    listed = admin_client.get(EVENTS, {"q": str(uuid.uuid4())})
    assert listed.status_code == 200 and cells(listed.content.decode(), "id") == []


# --- last_error in the dead letters' and payouts' lists --------------------------------------


def test_the_dead_letters_list_shows_their_last_error_cut_short_and_the_page_all_of_it(admin_client: Client) -> None:
    # given: a dead letter with a long error
    with system_context("test: dead letter"):
        message = OutboxMessage.objects.create(
            topic="outboxtest.nobody-listens",
            aggregate_type="test",
            aggregate_id="1",
            payload={},
            status=OutboxMessage.Status.DEAD,
            attempts=10,
            last_error=LONG_ERROR,
        )
    # when: the operator lists the dead letters, then opens the one
    listed = admin_client.get("/admin/outbox/outboxmessage/", {"dead": "yes"}).content.decode()
    page = admin_client.get(f"/admin/outbox/outboxmessage/{message.pk}/change/").content.decode()
    # then: the list shows the start of the error, cut short; the page shows all of it
    [cell] = cells(listed, "short_last_error")
    assert cell.startswith("ProviderError: the provider refused the call.") and cell.endswith("…")
    assert "END-OF-ERROR" not in cell and len(cell) <= 120
    assert readonly_value(page, "last_error") == LONG_ERROR


def test_the_payouts_list_shows_their_last_error_cut_short_and_the_page_all_of_it(
    admin_client: Client, tenant_a: Any
) -> None:
    # given: a payout the provider keeps refusing, and one without an error
    make_wallet(tenant_a.org, credited=2600)
    make_wallet(tenant_a.org, credited=3000)
    projection_rebuild()
    refused, clean = payout_batch_run(trigger="test").payout_ids
    with system_context("test"):
        Payout.objects.filter(pk=refused).update(last_error=LONG_ERROR)
    # when: the operator lists the payouts, then opens the refused one
    listed = admin_client.get("/admin/payouts/payout/").content.decode()
    page = admin_client.get(f"/admin/payouts/payout/{refused}/change/").content.decode()
    # then: the list shows the start of its error, cut short, and the admin's "-" for the other
    errors = dict(zip(cells(listed, "id"), cells(listed, "short_last_error"), strict=True))
    assert errors[str(clean)] == "-"
    assert errors[str(refused)].startswith("ProviderError: the provider refused the call.")
    assert errors[str(refused)].endswith("…") and len(errors[str(refused)]) <= 120
    # and: its page shows the whole error
    assert readonly_value(page, "last_error") == LONG_ERROR
