"""The operator's payout controls in the Django admin: "Pay out now" and destinations."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.ledger.projection import projection_rebuild
from apps.ops.killswitch import kill_switch_engage
from apps.outbox.models import OutboxMessage
from apps.payouts.models import Payout, PayoutDestination
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import make_wallet

pytestmark = pytest.mark.django_db(transaction=True)

PAY_OUT_NOW = "/admin/payouts/payoutbatch/pay-out-now/"


def logged_in(**flags: bool) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, **flags))
    return client


def batch_requests() -> int:
    with system_context("test: outbox"):
        return OutboxMessage.objects.filter(topic="payout.batch_requested").count()


def test_a_superuser_asks_for_a_batch_now_through_the_outbox() -> None:
    client = logged_in(is_superuser=True)
    # given: the batch list shows the button
    assert b"Pay out now" in client.get("/admin/payouts/payoutbatch/").content
    # when: it is pressed
    response = client.post(PAY_OUT_NOW)
    # then: back to the list, one batch request queued and audited
    assert response.status_code == 302 and response["Location"].endswith("/admin/payouts/payoutbatch/")
    assert batch_requests() == 1
    with system_context("test: audit"):
        assert AuditLog.objects.filter(action="payout_batch.request").count() == 1


def test_pay_out_now_wants_a_post_from_a_superuser() -> None:
    assert logged_in(is_superuser=True).get(PAY_OUT_NOW).status_code == 405
    assert Client().post(PAY_OUT_NOW).status_code == 302  # to the admin login
    staff = logged_in(is_superuser=False)
    staff.post(PAY_OUT_NOW)
    assert batch_requests() == 0


def test_pay_out_now_with_the_payouts_kill_switch_engaged_says_so_and_requests_nothing() -> None:
    # given: an operator has engaged the payouts kill switch
    with system_context("test: kill switch"):
        kill_switch_engage(capability="payouts", reason="provider incident", actor_label="test")
    client = logged_in(is_superuser=True)
    # when: "Pay out now" is pressed
    response = client.post(PAY_OUT_NOW, follow=True)
    # then: back on the list with the reason, and nothing queued
    assert response.status_code == 200
    assert b"No payout batch requested" in response.content
    assert batch_requests() == 0


def test_the_destination_form_validates_through_the_provider(tenant_a: Any) -> None:
    client = logged_in(is_superuser=True)
    member = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=member, role="photographer")
    form = {"tenant": tenant_a.org.pk, "owner": member.pk, "provider": "stripe"}
    # when: a destination that is not a Stripe connected account
    refused = client.post("/admin/payouts/payoutdestination/add/", {**form, "destination": "IBAN DE00"})
    # then: the form says why and nothing is stored
    assert refused.status_code == 200 and b"destination" in refused.content
    with system_context("test"):
        assert not PayoutDestination.objects.exists()
    # when: a good one
    saved = client.post("/admin/payouts/payoutdestination/add/", {**form, "destination": "acct_1Nv0FGQ9RKHgCVdK"})
    # then: stored through the service, audited with the admin as actor
    assert saved.status_code == 302
    with system_context("test"):
        row = PayoutDestination.objects.get()
        audit = AuditLog.objects.get(action="payout_destination.set")
    assert (row.owner_id, row.provider, row.destination) == (member.pk, "stripe", "acct_1Nv0FGQ9RKHgCVdK")
    assert audit.actor_label.startswith("admin:")


def test_a_destination_for_a_non_member_is_a_form_error_not_a_500(tenant_a: Any) -> None:
    client = logged_in(is_superuser=True)
    outsider = UserFactory()
    response = client.post(
        "/admin/payouts/payoutdestination/add/",
        {"tenant": tenant_a.org.pk, "owner": outsider.pk, "provider": "sandbox", "destination": "x"},
    )
    assert response.status_code == 200 and b"not a member of the studio" in response.content
    with system_context("test"):
        assert not PayoutDestination.objects.exists()


def test_the_operator_settles_a_payout_needing_review_from_the_list(tenant_a: Any) -> None:
    # given: a payout in review
    make_wallet(tenant_a.org, credited=2600)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with system_context("test"):
        Payout.objects.filter(pk=payout_id).update(status="needs_review")
    client = logged_in(is_superuser=True)
    # when: "Checked with the provider: not paid", confirmed with what the provider showed
    selected = {"action": "mark_failed", "_selected_action": [str(payout_id)]}
    assert client.post("/admin/payouts/payout/", selected).status_code == 200  # the confirmation
    response = client.post("/admin/payouts/payout/", {**selected, "apply": "1", "note": "PayPal: returned"})
    # then: failed, credited back, audited with the admin
    assert response.status_code == 302
    with system_context("test"):
        payout = Payout.objects.get(pk=payout_id)
        audit = AuditLog.objects.get(action="payout.resolve")
    assert payout.status == "failed" and payout.reversal_event_id is not None
    assert payout.resolved_by.startswith("admin:") and audit.actor_label == payout.resolved_by
