"""The admin's refunds say what became of each refund: "Refunded (landed <when>)" once it landed,
"Submitted to the provider" only while the provider's confirmation is awaited.

Found walking the admin as an operator: a studio's refund of some items, confirmed by the
provider, still read "Submitted to the provider" (its stored status: landing sets `landed_at`
and leaves the status as it was), so a refund that had landed looked stuck. The status shown is
derived from the stored status and its times (the stored status and its choices are unchanged),
and the list's "status" filter tells refunds waiting on the provider from landed ones.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format

from apps.commerce.models import Checkout, Refund, Transaction
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import drain_outbox
from tests.commerce.refunds import ask, confirmed, fresh
from tests.commerce.test_refund_failed_at_provider import lines_of
from tests.factories.tenancy import UserFactory
from tests.web.studio.conftest import StudioPeople

LIST = "/admin/commerce/refund/"

# March 4, 2026, 10:05 a.m. and so on: how the admin writes a time (en-us, UTC)
LANDED = datetime(2026, 3, 4, 10, 5, tzinfo=UTC)
FAILED_AFTER = datetime(2026, 3, 6, 9, 30, tzinfo=UTC)
SETTLED = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
FAILED_BEFORE = datetime(2026, 1, 14, 15, 0, tzinfo=UTC)

# Each state a refund can be in: its stored columns, what the admin says, and the filter choice
# that finds it.
STATES: dict[str, tuple[dict[str, Any], str, str]] = {
    "requested": ({"status": "requested"}, "Requested: being sent to the provider", "to_send"),
    "submitted": ({"status": "submitted"}, "Submitted to the provider: waiting for it to confirm", "at_provider"),
    "landed": (
        {"status": "submitted", "landed_at": LANDED},
        "Refunded (landed March 4, 2026, 10:05 a.m.)",
        "landed",
    ),
    # asked for, and the whole payment came back otherwise before it was sent
    "requested, landed with the whole payment": (
        {"status": "requested", "landed_at": LANDED},
        "Refunded (landed March 4, 2026, 10:05 a.m.)",
        "landed",
    ),
    "failed after landing": (
        {"status": "submitted", "landed_at": LANDED, "provider_failed_at": FAILED_AFTER},
        "Failed at the provider after it landed (March 6, 2026, 9:30 a.m.): still owed to the shopper",
        "still_owed",
    ),
    "refused": ({"status": "failed"}, "Failed: refused by the provider", "failed"),
    "failed before landing": (
        {"status": "failed", "provider_failed_at": FAILED_BEFORE},
        "Failed at the provider (Jan. 14, 2026, 3 p.m.), before it landed",
        "failed",
    ),
    "settled": (
        {"status": "settled", "settled_outside_at": SETTLED, "settled_outside_note": "bank transfer 42"},
        "Paid back outside the provider (March 9, 2026, 4 p.m.)",
        "settled",
    ),
    "settled after failing after landing": (
        {
            "status": "settled",
            "landed_at": LANDED,
            "provider_failed_at": FAILED_AFTER,
            "settled_outside_at": SETTLED,
            "settled_outside_note": "bank transfer 43",
        },
        "Paid back outside the provider (March 9, 2026, 4 p.m.)",
        "settled",
    ),
    "not needed": ({"status": "not_needed"}, "Not needed: nothing is owed", "not_needed"),
}


def operator() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    return client


def status_cells(page: str) -> dict[int, str]:
    """The refunds list's rows: refund id -> the text of its status cell."""
    found = {}
    for row in re.findall(r"<tr>.*?</tr>", page, re.S):
        pk = re.search(r'name="_selected_action" value="(\d+)"', row)
        status = re.search(r'<td class="field-status_shown">(.*?)</td>', row, re.S)
        if pk and status:
            found[int(pk[1])] = status[1].strip()
    return found


@pytest.mark.django_db
def test_each_refund_state_is_shown_truthfully_and_found_by_the_status_filter(tenant_a: Any) -> None:
    # given: one refund in each state, of one paid order
    org = tenant_a.org
    with tenant_context(org.pk):
        checkout = Checkout.objects.create(
            tenant=org,
            email="ann@example.test",
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=10_000,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        txn = Transaction.objects.create(
            tenant=org,
            checkout=checkout,
            provider="sandbox",
            amount_minor=10_000,
            currency="EUR",
            status="paid",
            paid_at=timezone.now(),
        )
        refunds = {
            state: Refund.objects.create(
                tenant=org,
                transaction=txn,
                reason=Refund.Reason.STUDIO_PARTIAL,
                amount_minor=100,
                currency="EUR",
                idempotency_key=f"admin-status-{n}",
                **columns,
            )
            for n, (state, (columns, _, _)) in enumerate(STATES.items())
        }
    client = operator()
    # when: the operator opens the refunds list
    shown = status_cells(client.get(LIST).content.decode())
    # then: each refund's status says what became of it
    assert {state: shown[refund.pk] for state, refund in refunds.items()} == {
        state: text for state, (_, text, _) in STATES.items()
    }
    # and: each refund's own page says the same
    for state, refund in refunds.items():
        assert STATES[state][1] in client.get(f"{LIST}{refund.pk}/change/").content.decode(), state
    # and: each choice of the status filter lists exactly the refunds in that state
    choices = {choice for _, _, choice in STATES.values()}
    found = {
        choice: {r.pk for r in client.get(LIST, {"progress": choice}).context["cl"].result_list} for choice in choices
    }
    assert found == {
        choice: {refunds[state].pk for state, (_, _, c) in STATES.items() if c == choice} for choice in choices
    }
    # and: the stored statuses are as they were
    with tenant_context(org.pk):
        stored = dict(Refund.objects.filter(transaction=txn).values_list("pk", "status"))
    assert stored == {refund.pk: STATES[state][0]["status"] for state, refund in refunds.items()}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
def test_a_studios_item_refund_shows_submitted_while_waiting_then_refunded_once_it_landed(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the download (9.00 EUR) of a paid sale, and the provider accepted it
    refund = ask(studio, sale, [lines_of(studio, sale)["download"]])
    drain_outbox(topics={"payment.refund_requested"})
    assert fresh(refund).status == "submitted"
    client = operator()
    # when: the operator looks before the provider confirmed it
    waiting = status_cells(client.get(LIST).content.decode())[refund.pk]
    waiting_found = [r.pk for r in client.get(LIST, {"progress": "at_provider"}).context["cl"].result_list]
    # then: submitted, waiting, and listed among those waiting on the provider
    assert waiting == "Submitted to the provider: waiting for it to confirm"
    assert waiting_found == [refund.pk]
    # when: the provider's confirmation arrives and is applied
    confirmed(refund, sale)
    landed = fresh(refund)
    assert (landed.status, landed.landed_at is not None) == ("submitted", True)
    # then: the list and the refund's page say it was refunded, and when; the filter agrees
    when = date_format(timezone.localtime(landed.landed_at), "DATETIME_FORMAT")
    expected = f"Refunded (landed {when})"
    assert status_cells(client.get(LIST).content.decode())[refund.pk] == expected
    page = client.get(f"{LIST}{refund.pk}/change/").content.decode()
    assert expected in page and "Submitted to the provider" not in page
    assert [r.pk for r in client.get(LIST, {"progress": "landed"}).context["cl"].result_list] == [refund.pk]
    assert list(client.get(LIST, {"progress": "at_provider"}).context["cl"].result_list) == []


@pytest.mark.django_db
def test_the_paid_back_outside_page_says_what_became_of_each_refund(tenant_a: Any) -> None:
    # given: a refund that landed and then failed at the provider (stored: still `submitted`)
    org = tenant_a.org
    with tenant_context(org.pk):
        checkout = Checkout.objects.create(
            tenant=org,
            email="ann@example.test",
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=810,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        txn = Transaction.objects.create(
            tenant=org,
            checkout=checkout,
            provider="sandbox",
            amount_minor=810,
            currency="EUR",
            status="paid",
            paid_at=timezone.now(),
        )
        columns, text, _ = STATES["failed after landing"]
        refund = Refund.objects.create(
            tenant=org,
            transaction=txn,
            reason=Refund.Reason.STUDIO_PARTIAL,
            amount_minor=810,
            currency="EUR",
            idempotency_key="admin-status-settle",
            **columns,
        )
    # when: the operator picks "Record the selected refunds as paid back outside the provider"
    page = operator().post(LIST, {"action": "settle_outside", "_selected_action": [str(refund.pk)]})
    # then: the page asking how lists it as still owed, with its amount as money
    body = page.content.decode()
    assert page.status_code == 200
    assert f"<td>{text}</td>" in body and "<td>8.10 EUR</td>" in body
    assert "Submitted to the provider" not in body


def refund_in_state(org: Any, state: str, *, email: str = "ann@example.test") -> Refund:
    """A refund of 8.10 EUR, in `state` (one of STATES), of a paid order of `org`."""
    with tenant_context(org.pk):
        checkout = Checkout.objects.create(
            tenant=org,
            email=email,
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=810,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        txn = Transaction.objects.create(
            tenant=org,
            checkout=checkout,
            provider="sandbox",
            amount_minor=810,
            currency="EUR",
            status="paid",
            paid_at=timezone.now(),
        )
        return Refund.objects.create(
            tenant=org,
            transaction=txn,
            reason=Refund.Reason.STUDIO_PARTIAL,
            amount_minor=810,
            currency="EUR",
            idempotency_key=f"admin-status-{uuid.uuid4()}",
            **STATES[state][0],
        )


@pytest.mark.django_db
@pytest.mark.parametrize("state", list(STATES))
def test_a_refunds_page_names_it_by_its_order_and_what_became_of_it(tenant_a: Any, state: str) -> None:
    # given: a refund of 8.10 EUR of an order (its stored status alone may not say what became of it)
    refund = refund_in_state(tenant_a.org, state)
    with tenant_context(tenant_a.org.pk):
        checkout_id = Transaction.objects.get(pk=refund.transaction_id).checkout_id
    # when: the operator opens the refund's page
    page = operator().get(f"{LIST}{refund.pk}/change/").content.decode()
    # then: its heading names the order as the shop and e-mails do, the amount, and the status shown
    # below it; not the payment's id, nor the stored status
    heading = re.search(r"<h2>(.*?)</h2>", page, re.S)
    assert heading is not None
    expected = f"refund {refund.pk} of order {str(checkout_id)[:8]} (8.10 EUR): {STATES[state][1]}"
    assert html.unescape(heading[1]).strip() == expected
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title is not None and html.unescape(title[1]).startswith(expected)
    assert f"({refund.status})" not in html.unescape(heading[1])


@pytest.mark.django_db
def test_the_paid_back_outside_page_names_each_refunds_studio_order_and_shopper(tenant_a: Any, tenant_b: Any) -> None:
    # given: refunds of two studios' orders, refused by the provider
    ann = refund_in_state(tenant_a.org, "refused", email="ann@example.test")
    bob = refund_in_state(tenant_b.org, "refused", email="bob@example.test")
    with system_context("test"):
        orders = {r.pk: str(r.transaction.checkout_id)[:8] for r in Refund.objects.select_related("transaction")}
    # when: the operator picks "Record the selected refunds as paid back outside the provider" for both
    page = operator().post(LIST, {"action": "settle_outside", "_selected_action": [str(ann.pk), str(bob.pk)]})
    # then: the page lists, for each, its studio, order and shopper's e-mail, as the payouts' page
    # lists each payout's studio and photographer
    assert page.status_code == 200
    rows = [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", page.content.decode().split('<div id="content"')[1], re.S)
    ]
    assert rows == [
        ["Refund", "Studio", "Order", "Shopper", "Status", "Amount", "Last error"],
        [str(ann.pk), str(tenant_a.org), orders[ann.pk], "ann@example.test", STATES["refused"][1], "8.10 EUR", ""],
        [str(bob.pk), str(tenant_b.org), orders[bob.pk], "bob@example.test", STATES["refused"][1], "8.10 EUR", ""],
    ]
