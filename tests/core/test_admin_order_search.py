"""The admin finds an order by the short id the shop, the wallet and the e-mails show.

Found walking the admin with a shopper's message: the shop and the wallet name an order "order
09e10db3" (the first 8 characters of its checkout's id), but the admin's checkout search found a
checkout by its whole id only (and by reading every id as text), and the webhook events search
not by the checkout at all. Now both find a row by its checkout's id, whole or its first 8 (or
more) characters, by a range of the id's index; any other text searches as before, never read as
an id by PostgreSQL.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db

CHECKOUTS = "/admin/commerce/checkout/"
EVENTS = "/admin/payments/webhookevent/"
WANTED = uuid.UUID("09e10db3-4f2a-4c1e-9a7b-0c1d2e3f4a5b")
# the ids next to it, either side of its first 8 characters
BEFORE = uuid.UUID("09e10db2-ffff-4fff-bfff-ffffffffffff")
AFTER = uuid.UUID("09e10db4-0000-4000-8000-000000000000")


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def a_checkout(org: Any, pk: uuid.UUID, email: str = "ann@example.test") -> Checkout:
    with tenant_context(org.pk):
        return Checkout.objects.create(
            id=pk,
            tenant=org,
            email=email,
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=900,
            expires_at=timezone.now() + timedelta(hours=1),
        )


def an_event(event_id: str, checkout_id: uuid.UUID | None) -> WebhookEvent:
    with system_context("test: webhook event"):
        return WebhookEvent.objects.create(
            provider="sandbox",
            event_id=event_id,
            event_type="payment.paid",
            reference=f"ref-{event_id}",
            checkout_id=checkout_id,
            raw_body=b"{}",
            received_at=timezone.now(),
        )


def listed_ids(page: str) -> list[str]:
    cells = re.findall(r'<t[dh] class="field-id[^"]*">(.*?)</t[dh]>', page, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in cells]


SHORT_AND_WHOLE = [
    pytest.param(str(WANTED)[:8], id="short, as the shop shows it"),
    pytest.param(f"  {str(WANTED)[:8].upper()} ", id="short, upper case, spaces around"),
    pytest.param(str(WANTED)[:13], id="longer, with a dash"),
    pytest.param(str(WANTED), id="whole"),
    pytest.param(WANTED.hex.upper(), id="whole, upper case, without dashes"),
]


@pytest.mark.parametrize("typed", SHORT_AND_WHOLE)
def test_the_checkouts_search_finds_an_order_by_its_short_or_whole_id(
    tenant_a: Any, operator: Client, typed: str
) -> None:
    # given: the order, and two whose ids are next to its either side
    for pk in (BEFORE, WANTED, AFTER):
        a_checkout(tenant_a.org, pk)
    # when: the operator searches the checkouts for its id, short or whole
    listed = operator.get(CHECKOUTS, {"q": typed})
    # then: that order alone is listed
    assert listed.status_code == 200
    assert listed_ids(listed.content.decode()) == [str(WANTED)]


def test_the_checkouts_search_reads_no_id_as_text(tenant_a: Any, operator: Client) -> None:
    # given: an order
    a_checkout(tenant_a.org, WANTED)
    for typed in (str(WANTED)[:8], str(WANTED)):
        # when: the operator searches for its short or whole id
        with CaptureQueriesContext(connection) as queries:
            listed = operator.get(CHECKOUTS, {"q": typed})
        # then: found by the id as an id (its index), not by casting every id to text
        assert listed_ids(listed.content.decode()) == [str(WANTED)]
        searched = [q["sql"] for q in queries.captured_queries if "commerce_checkout" in q["sql"]]
        assert searched and not [sql for sql in searched if '"commerce_checkout"."id"::' in sql], searched


@pytest.mark.parametrize(
    ("typed", "finds_it"),
    [
        ("ann@example", True),  # the shopper's e-mail still finds it
        ("09e10db", False),  # shorter than the shop's short id
        ("09e10dbz", False),  # not hex
        ("09e10db3zz", False),
        ("order 09e10db3", False),  # both words must match, as ever
        ("%", False),
        ("\\", False),
        ("-", False),
        ("x" * 5000, False),
        ("9" * 40, False),  # longer than an id
        ("'", True),  # Django reads a lone quote as an empty quoted term: every row
        ("09e10db3\x00", True),  # Django drops a search with a NUL character: every row
    ],
)
def test_the_checkouts_search_answers_the_list_whatever_is_typed(
    tenant_a: Any, operator: Client, typed: str, finds_it: bool
) -> None:
    # given: an order
    a_checkout(tenant_a.org, WANTED)
    # when: the operator searches for text that is not its id
    listed = operator.get(CHECKOUTS, {"q": typed})
    # then: the list answers (no 500), finding what the text finds
    assert listed.status_code == 200
    assert listed_ids(listed.content.decode()) == ([str(WANTED)] if finds_it else [])


@pytest.mark.parametrize("typed", SHORT_AND_WHOLE)
def test_the_webhook_events_search_finds_an_orders_events_by_its_short_or_whole_id(
    operator: Client, typed: str
) -> None:
    # given: two events of the order, one of an order next to it, one of no order
    mine = [an_event("evt_paid", WANTED), an_event("evt_refunded", WANTED)]
    an_event("evt_other", AFTER)
    an_event("evt_none", None)
    # when: the operator searches the events for the order's id, short or whole
    listed = operator.get(EVENTS, {"q": typed})
    # then: the order's events alone are listed
    assert listed.status_code == 200
    assert sorted(listed_ids(listed.content.decode())) == sorted(str(e.pk) for e in mine)
