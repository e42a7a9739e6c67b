"""What the studio's overview says about the signed-in member's wallet and about payouts: a
payout's debit the projector has not counted yet, payouts on their way, and payouts the bank
returned, which wait for the platform's operators and are not on their way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from apps.ledger.projection import projection_rebuild
from apps.payments.providers.registry import get_provider
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run, payout_submit
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import deliver
from tests.payouts.helpers import make_wallet
from tests.payouts.webhook_helpers import payout_of, process
from tests.web.studio.conftest import signed_in, text

pytestmark = pytest.mark.django_db(transaction=True)


def section(page: str, heading_id: str) -> str:
    """The overview's section labelled by `heading_id`, whitespace runs as one space ("" if absent)."""
    match = re.search(rf'<section aria-labelledby="{heading_id}">(.*?)</section>', page, re.S)
    return re.sub(r"\s+", " ", match.group(1)) if match else ""


def test_a_payout_debit_not_yet_counted_reads_as_less_on_the_overview(tenant_a: Any) -> None:
    # given: a photographer paid 30.00 EUR, the payout's debit recorded but not yet projected
    wallet = make_wallet(tenant_a.org, credited=3000)
    projection_rebuild()
    assert len(payout_batch_run(trigger="test").payout_ids) == 1
    # when: they open the studio's overview
    wallet_section = section(text(signed_in(wallet.owner).get("/studio/")), "wallet-h")
    # then: it says the balance is about to go down by 30.00 EUR, as the wallet page does
    assert "30.00 EUR" in wallet_section
    assert "Less 30.00 EUR just recorded (a payout or a refund)" in wallet_section
    assert "-30.00" not in wallet_section and "(+" not in wallet_section


def test_a_credit_not_yet_counted_reads_as_plus_on_the_overview(tenant_a: Any) -> None:
    # given: a photographer credited 12.00 EUR, not yet projected
    wallet = make_wallet(tenant_a.org, credited=1200)
    # when: they open the studio's overview
    wallet_section = section(text(signed_in(wallet.owner).get("/studio/")), "wallet-h")
    # then: the credit is announced as on its way into the balance
    assert "Plus 12.00 EUR just recorded" in wallet_section and "Less" not in wallet_section


def test_a_payout_the_bank_returned_is_held_for_review_not_on_its_way(tenant_a: Any) -> None:
    # given: a photographer's 42.00 EUR payout, paid through the sandbox
    wallet = make_wallet(tenant_a.org, credited=4200)
    projection_rebuild()
    payout_batch_run(trigger="test")
    with tenant_context(tenant_a.org.pk):
        payout_submit(payout_id=payout_of(wallet).id)
    assert payout_of(wallet).status == Payout.Status.PAID
    # when: the receiver's bank returns it and the sandbox says so by webhook
    sandbox = get_provider("sandbox")
    assert deliver([sandbox.payout_return(payout_id=str(payout_of(wallet).id))]) == [200]  # type: ignore[attr-defined]
    process()
    assert payout_of(wallet).status == Payout.Status.NEEDS_REVIEW
    # then: neither the photographer nor the owner sees it among the payouts on their way
    for viewer in (wallet.owner, tenant_a.owner):
        page = text(signed_in(viewer).get("/studio/"))
        on_their_way = section(page, "payouts-h")
        assert "None pending." in on_their_way and "42.00 EUR" not in on_their_way
        # and: it is listed apart, held for the operators' review, with what that means
        held = section(page, "held-h")
        assert "Payouts held for review" in held and "42.00 EUR" in held and "Sandbox" in held
        assert "This payout is not on its way" in held and "operators are checking with the provider" in held
    assert wallet.owner.get_username() in section(text(signed_in(tenant_a.owner).get("/studio/")), "held-h")


def test_payouts_on_their_way_and_held_ones_are_counted_apart(tenant_a: Any) -> None:
    # given: the studio's pending payout of 20.00 EUR and six held ones of 10.00 EUR
    pending = make_wallet(tenant_a.org, credited=2000)
    held_wallets = [make_wallet(tenant_a.org, credited=1000) for _ in range(6)]
    projection_rebuild()
    payout_batch_run(trigger="test")
    with system_context("test: the provider left these payouts unknown"):
        Payout.objects.filter(account__in=[w.account for w in held_wallets]).update(
            status=Payout.Status.NEEDS_REVIEW, completed_at=timezone.now()
        )
    # when: the owner opens the overview
    page = text(signed_in(tenant_a.owner).get("/studio/"))
    # then: the pending one is on its way; five of the six held ones are shown, and all six counted
    on_their_way, held = section(page, "payouts-h"), section(page, "held-h")
    assert "20.00 EUR" in on_their_way and "10.00 EUR" not in on_their_way
    assert on_their_way.count("<tr>") == 2  # the header and one payout
    assert "These 6 payouts are not on their way" in held and "5 of 6 shown" in held
    assert held.count("10.00 EUR") == 5 and "20.00 EUR" not in held
    # and: the pending photographer, with nothing held, sees no held section at all
    assert section(text(signed_in(pending.owner).get("/studio/")), "held-h") == ""
