"""Settling a payout in the admin after checking it with the provider asks first (README runbook
"Payouts").

Found following the runbook: "Checked with the provider: not paid (credit the wallet back)"
credited the wallet back on one click, with no page showing what it would do and no note of
what the provider showed, where resolving a webhook event asks for one; "paid" likewise. Both
now show a page listing the payouts (studio, photographer, amount as money, provider by name,
status, last error) and asking what the provider showed; nothing is written until it is answered
with a note, which an audit row keeps with the operator. Cancelling goes back and changes
nothing. A payout's own page offers both as buttons (on the payouts each can settle), through
the same page.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.ledger.models import LedgerEvent
from apps.ledger.projection import projection_rebuild
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog, User
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import Wallet, make_wallet

pytestmark = pytest.mark.django_db(transaction=True)

PAYOUTS = "/admin/payouts/payout/"
NOT_PAID = "Checked with the provider: not paid (credit the wallet back)"
PAID = "Checked with the provider: paid"
NOTE = "PayPal shows item 5TY2 returned on 3 May"
TOO_LONG = "x" * 1001  # a note has 1,000 characters at most
FORM = re.compile(r'<form method="post" action="(?P<action>[^"]+)"[^>]*>(?P<body>.*?)</form>', re.S)


def superuser() -> tuple[Client, User]:
    user = cast(User, UserFactory(is_staff=True, is_superuser=True))
    client = Client()
    client.force_login(user)
    return client, user


def a_payout(tenant: Any, *, status: str = "needs_review", credited: int = 2600) -> tuple[uuid.UUID, Wallet]:
    """A payout of a photographer's whole wallet (`credited`, EUR), then set to `status`."""
    wallet = make_wallet(tenant.org, credited=credited)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with system_context("test"):
        Payout.objects.filter(pk=payout_id).update(
            status=status, provider_payout_id=f"sbx_{payout_id}", last_error="the provider timed out"
        )
    return payout_id, wallet


def written(payout_id: uuid.UUID) -> tuple[Any, ...]:
    """What settling a payout writes: its row, the wallet's ledger events, its audit rows."""
    with system_context("test"):
        payout = Payout.objects.get(pk=payout_id)
        return (
            payout.status,
            payout.reversal_event_id,
            payout.resolved_by,
            payout.completed_at,
            LedgerEvent.objects.filter(account_id=payout.account_id).count(),
            AuditLog.objects.filter(target_type="payout", target_id=str(payout_id)).count(),
        )


def audits(payout_id: uuid.UUID) -> dict[str, AuditLog]:
    with system_context("test"):
        return {a.action: a for a in AuditLog.objects.filter(target_type="payout", target_id=str(payout_id))}


def button_url(page: str, label: str) -> str | None:
    """Where a payout page's button of `label` posts (its form carries the CSRF token)."""
    for form in FORM.finditer(page):
        if f">{label}</button>" in form["body"]:
            assert 'name="csrfmiddlewaretoken"' in form["body"]
            return form["action"]
    return None


def cancel_url(page: str) -> str:
    match = re.search(r'<a href="([^"]+)" class="button cancel-link">Cancel</a>', page)
    assert match is not None, "the page has no Cancel link"
    return match[1].replace("&amp;", "&")


@pytest.mark.parametrize(
    ("action", "status", "reversed_"),
    [("mark_failed", "failed", True), ("mark_paid", "paid", False)],
    ids=["not paid", "paid"],
)
def test_settling_a_payout_from_the_list_shows_it_and_asks_for_a_note_first(
    tenant_a: Any, action: str, status: str, reversed_: bool
) -> None:
    # given: a payout needing review, and a platform superuser on the payouts list
    payout_id, wallet = a_payout(tenant_a)
    before = written(payout_id)
    client, admin_user = superuser()
    # when: they pick the action for it
    page = client.post(PAYOUTS, {"action": action, "_selected_action": [str(payout_id)]})
    # then: a page lists the payout: its id, studio, photographer, amount as money, status, error
    assert page.status_code == 200
    text = page.content.decode()
    for shown in (str(payout_id), str(tenant_a.org), wallet.owner.get_username(), "26.00 EUR", "Needs review"):
        assert shown in text
    assert "the provider timed out" in text and 'name="note"' in text
    # and: the provider by its name, as the payout's page shows it, not as stored
    assert "<td>Sandbox</td>" in text and "<td>sandbox</td>" not in text
    # and: nothing is written yet
    assert written(payout_id) == before
    # when: they answer with a note
    done = client.post(
        PAYOUTS,
        {"action": action, "_selected_action": [str(payout_id)], "apply": "1", "note": f"  {NOTE}  "},
        follow=True,
    )
    # then: back on the list, told what happened; the payout settled (credited back if not paid)
    assert done.redirect_chain[-1][0] == PAYOUTS
    word = "failed and credited back" if reversed_ else "paid"
    assert [str(m) for m in done.context["messages"]] == [f"1 payout marked {word}."]
    with system_context("test"):
        payout = Payout.objects.get(pk=payout_id)
    assert payout.status == status and (payout.reversal_event_id is not None) == reversed_
    # and: one audit row, of the settling itself, names the operator and holds the note
    rows = audits(payout_id)
    assert set(rows) == {"payout.resolve"}
    resolved = rows["payout.resolve"]
    assert (resolved.actor_user_id, resolved.actor_label, resolved.tenant_id) == (
        admin_user.pk,
        f"admin:{admin_user.get_username()}",
        tenant_a.org.pk,
    )
    assert resolved.data["to"] == status and resolved.data["note"] == NOTE


@pytest.mark.parametrize("note", ["", "   \n ", TOO_LONG], ids=["empty", "blank", "long"])
@pytest.mark.parametrize("action", ["mark_failed", "mark_paid"])
def test_a_settlement_without_a_note_is_refused_and_writes_nothing(tenant_a: Any, action: str, note: str) -> None:
    # given: a payout needing review
    payout_id, _ = a_payout(tenant_a)
    before = written(payout_id)
    client, _ = superuser()
    # when: the confirmation is posted without a (usable) note
    page = client.post(PAYOUTS, {"action": action, "_selected_action": [str(payout_id)], "apply": "1", "note": note})
    # then: asked again, the note in error; the payout, the wallet and the audit log untouched
    assert page.status_code == 200 and b"errorlist" in page.content and b'name="note"' in page.content
    assert written(payout_id) == before


def test_cancelling_goes_back_to_the_list_as_it_was_and_changes_nothing(tenant_a: Any) -> None:
    # given: the confirmation page, opened from a filtered list
    payout_id, _ = a_payout(tenant_a)
    before = written(payout_id)
    client, _ = superuser()
    page = client.post(
        f"{PAYOUTS}?status__exact=needs_review", {"action": "mark_failed", "_selected_action": [str(payout_id)]}
    )
    # when: the operator presses Cancel
    back = cancel_url(page.content.decode())
    listed = client.get(back)
    # then: the list with its filter, and nothing written
    assert back == f"{PAYOUTS}?status__exact=needs_review" and listed.status_code == 200
    assert written(payout_id) == before


def test_a_payouts_own_page_settles_it_through_the_same_confirmation(tenant_a: Any) -> None:
    # given: a payout needing review, and its page
    payout_id, wallet = a_payout(tenant_a)
    before = written(payout_id)
    client, admin_user = superuser()
    own_page = f"{PAYOUTS}{payout_id}/change/"
    url = button_url(client.get(own_page).content.decode(), NOT_PAID)
    assert url is not None, "the payout's page has no 'not paid' button"
    assert button_url(client.get(own_page).content.decode(), PAID) is not None
    # when: the operator presses "not paid"
    page = client.post(url)
    # then: the confirmation lists this payout, nothing written; Cancel leads back to its page
    assert page.status_code == 200
    assert str(payout_id) in page.content.decode() and "26.00 EUR" in page.content.decode()
    assert wallet.owner.get_username() in page.content.decode()
    assert cancel_url(page.content.decode()) == own_page and written(payout_id) == before
    # when: they answer it (the page posts back where it was opened) without a note, then with one
    refused = client.post(url, {"apply": "1", "note": " "})
    assert refused.status_code == 200 and b"errorlist" in refused.content and written(payout_id) == before
    done = client.post(url, {"apply": "1", "note": NOTE}, follow=True)
    # then: back on the payout's page; failed, credited back, the note audited with the operator
    assert done.redirect_chain[-1][0] == own_page
    with system_context("test"):
        payout = Payout.objects.get(pk=payout_id)
    assert payout.status == "failed" and payout.reversal_event_id is not None
    resolved = audits(payout_id)["payout.resolve"]
    assert (resolved.actor_user_id, resolved.data["note"]) == (admin_user.pk, NOTE)
    # and: a settled payout's page offers neither button any more
    settled = client.get(own_page).content.decode()
    assert button_url(settled, NOT_PAID) is None and button_url(settled, PAID) is None


def test_a_submitted_payouts_page_offers_paid_only(tenant_a: Any) -> None:
    # given: a payout still with the provider (it is credited back when the provider reports it)
    payout_id, _ = a_payout(tenant_a, status="submitted")
    client, _ = superuser()
    page = client.get(f"{PAYOUTS}{payout_id}/change/").content.decode()
    # then: only "paid" is offered
    assert button_url(page, PAID) is not None and button_url(page, NOT_PAID) is None


def test_staff_who_are_not_superusers_cannot_settle_payouts_even_with_a_note(tenant_a: Any) -> None:
    # given: a payout needing review, and a member of its studio who is platform staff, may view
    # (and change) everything and so sees the payout, but is not a superuser
    payout_id, _ = a_payout(tenant_a)
    before = written(payout_id)
    member = cast(User, UserFactory(is_staff=True, is_superuser=False))
    member.user_permissions.set(Permission.objects.filter(codename__regex=r"^(view|change)_"))
    MembershipFactory(tenant=tenant_a.org, user=member, role="owner")
    staff = Client()
    staff.force_login(User.objects.get(pk=member.pk))  # without the cached (empty) permissions
    own_page = staff.get(f"{PAYOUTS}{payout_id}/change/")
    assert own_page.status_code == 200 and b"/actions/" not in own_page.content
    # when: they post the confirmation, note and all, to the list and to the row's button
    for action in ("mark_paid", "mark_failed"):
        staff.post(PAYOUTS, {"action": action, "_selected_action": [str(payout_id)], "apply": "1", "note": NOTE})
        refused = staff.post(f"{PAYOUTS}{payout_id}/actions/{action}/", {"apply": "1", "note": NOTE})
        assert refused.status_code == 403
    # then: nothing is settled
    assert written(payout_id) == before
