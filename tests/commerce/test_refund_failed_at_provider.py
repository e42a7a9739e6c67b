"""A refund the provider accepted and then could not complete (Stripe `refund.failed`: the
shopper's card was closed meanwhile; the money went back to the merchant): the provider's event,
signed and delivered to the webhook endpoint and applied by the webhook consumer, turns the
refund `failed` (alerted, its items refundable again), or, for one that had landed already,
leaves it to an operator; never twice, whatever order the events come in (real Postgres and
Redis; the sandbox plays the provider).
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client

from apps.commerce.errors import RefundNotRecordedYet
from apps.commerce.models import CheckoutLine, Refund
from apps.commerce.services import refund_apply_provider_failure
from apps.commerce.services.payment import refund_retry, refundable_lines
from apps.ledger.models import LedgerEvent
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import ask, confirmed, fresh
from tests.commerce.test_refund_superseding import refund_rows
from tests.factories.tenancy import UserFactory
from tests.web.studio.conftest import StudioPeople, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def lines_of(studio: StudioPeople, checkout_id: str) -> dict[str, int]:
    with tenant_context(studio.org.pk):
        return {line.kind: line.pk for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}


def submitted(studio: StudioPeople, checkout_id: str, line_ids: list[int] | None) -> Refund:
    """The studio refunds these lines (None: the whole order) and the provider (sandbox) accepts the refund."""
    refund = ask(studio, checkout_id, line_ids)
    drain_outbox(topics={"payment.refund_requested"})
    made = fresh(refund)
    assert (made.status, made.landed_at) == ("submitted", None), made.last_error
    return made


def provider_says_failed(checkout_id: str, refund: Refund, reason: str = "expired_or_canceled_card") -> None:
    """The provider's refund-failed event for `refund`, delivered and processed."""
    event = sandbox_provider().fail_refund(
        reference=f"sbx_{checkout_id}", refund_id=refund.provider_refund_id, reason=reason
    )
    assert deliver([event]) == [200]
    drain_outbox(topics={"webhook.received"})


def told_again(studio: StudioPeople, checkout_id: str, refund: Refund, reason: str) -> str:
    """The same failure in another event (Stripe sends both `refund.updated` and `refund.failed`),
    applied as the webhook consumer applies it."""
    with tenant_context(studio.org.pk), transaction.atomic():
        return refund_apply_provider_failure(
            tenant_id=studio.org.pk,
            checkout_id=checkout_id,
            provider_refund_id=refund.provider_refund_id,
            reason=reason,
            source="test:refund.updated",
        ).describe()


def audits(action: str, refund: Refund) -> int:
    with system_context("test"):
        return AuditLog.objects.filter(action=action, data__refund_id=refund.pk).count()


def refund_keys(studio: StudioPeople) -> list[str]:
    with system_context("test"):
        keys = LedgerEvent.objects.filter(tenant_id=studio.org.pk, idempotency_key__startswith="refund:")
        return sorted(keys.values_list("idempotency_key", flat=True))


def sale_page_rows(studio: StudioPeople, checkout_id: str) -> list[str]:
    """The refunds table of the studio's sale page, one text per row."""
    return refund_rows(text(signed_in(studio.owner).get(f"/studio/sales/{checkout_id}/")))


def metric(line: str) -> float:
    body = Client().get("/metrics").content.decode()
    match = re.search(rf"^{re.escape(line)} (\S+)$", body, re.MULTILINE)
    assert match, f"{line} not in /metrics"
    return float(match[1])


def test_an_accepted_refund_that_fails_at_the_provider_is_failed_and_its_items_can_be_refunded_again(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the download (9.00), and the provider accepted it
    download = lines_of(studio, sale)["download"]
    refund = submitted(studio, sale, [download])
    mail.outbox.clear()
    # when: the provider then says the refund failed (the shopper's card was closed), in two events
    provider_says_failed(sale, refund)
    assert "nothing to change" in told_again(studio, sale, refund, "expired_or_canceled_card")
    # then: the refund is failed, saying why, and alerts as one
    failed = fresh(refund)
    assert (failed.status, failed.landed_at) == ("failed", None)
    assert "expired_or_canceled_card" in failed.last_error
    assert failed.provider_failed_at is not None
    assert metric('darkroom_refunds{status="failed"}') == 1
    [row] = sale_page_rows(studio, sale)
    assert "Failed: The payment provider could not complete this refund after accepting it" in row
    assert "(expired_or_canceled_card)" in row
    assert metric("darkroom_refunds_failed_after_landing_total") == 0
    # and: audited once; nothing was revoked or reversed, and the shopper was told nothing
    assert audits("refund.failed_at_provider", refund) == 1
    assert refund_keys(studio) == []
    assert mail.outbox == []
    # and: the download can be refunded again; asked again, it is sent, accepted and lands
    with tenant_context(studio.org.pk):
        lines = list(CheckoutLine.objects.filter(checkout_id=sale))
        assert download in {line.pk for line in refundable_lines(lines, Refund.objects.filter(pk=refund.pk))}
    again = ask(studio, sale, [download])
    confirmed(again, sale)
    assert fresh(again).landed_at is not None
    assert refund_keys(studio) == [f"refund:{sale}:{download}"]


def test_a_retried_refund_that_lands_is_not_taken_for_one_that_failed_after_landing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the whole order's refund failed at the provider after it accepted it
    refund = submitted(studio, sale, None)
    provider_says_failed(sale, refund)
    assert fresh(refund).status == "failed"
    # when: an operator retries it, and the new provider refund lands
    with tenant_context(studio.org.pk):
        assert refund_retry(refund_id=refund.pk, actor_label="operator", actor_user=None)
    confirmed(refund, sale)
    # then: it landed, and nothing counts it as failed after landing
    landed = fresh(refund)
    assert (landed.status, landed.provider_failed_at) == ("submitted", None)
    assert landed.landed_at is not None
    assert metric("darkroom_refunds_failed_after_landing_total") == 0


def test_a_landed_refund_that_then_fails_is_left_to_an_operator_and_counted_once(
    studio: StudioPeople, sale: str
) -> None:
    # given: the refund of the print (25.00) landed: the shopper was told, its credit reversed
    printed = lines_of(studio, sale)["print"]
    refund = submitted(studio, sale, [printed])
    confirmed(refund, sale)
    keys = refund_keys(studio)
    assert keys == [f"refund:{sale}:{printed}"]
    # when: the provider then says it failed, in two events
    provider_says_failed(sale, refund, reason="lost_or_stolen_card")
    assert "nothing to change" in told_again(studio, sale, refund, "lost_or_stolen_card")
    # then: it keeps its state (its effects stand), marked and counted for an operator, once
    kept = fresh(refund)
    assert (kept.status, kept.landed_at is not None) == ("submitted", True)
    assert kept.provider_failed_at is not None and "lost_or_stolen_card" in kept.last_error
    assert audits("refund.failed_after_landing", refund) == 1
    assert metric("darkroom_refunds_failed_after_landing_total") == 1
    assert metric('darkroom_refunds{status="failed"}') == 0
    # and: the studio's sale page says the shopper has neither the money nor the items
    [row] = sale_page_rows(studio, sale)
    assert "Failed after Sandbox (local) confirmed it" in row and "lost_or_stolen_card" in row
    assert "The shopper has not got this money back" in row
    # and: the operator finds it in the admin's refunds, filtered by when it failed
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    listed = {
        when: operator.get("/admin/commerce/refund/", {"failed_at_provider": when}).context["cl"].result_list
        for when in ("after_landing", "before_landing")
    }
    assert [r.pk for r in listed["after_landing"]] == [refund.pk] and list(listed["before_landing"]) == []
    assert refund_keys(studio) == keys


def test_a_failure_before_the_refund_is_accepted_is_retried_and_one_after_never_lands_it(
    studio: StudioPeople, sale: str
) -> None:
    # given: a refund whose provider call has not answered yet
    download = lines_of(studio, sale)["download"]
    refund = ask(studio, sale, [download])

    def failure() -> str:
        with tenant_context(studio.org.pk), transaction.atomic():
            return refund_apply_provider_failure(
                tenant_id=studio.org.pk,
                checkout_id=sale,
                provider_refund_id="re_sbx_not_stored_yet",
                reason="expired_or_canceled_card",
                source="test:event",
            ).describe()

    # when: the provider's failure event arrives first: it cannot tell whose refund that is yet
    with pytest.raises(RefundNotRecordedYet):
        failure()
    assert fresh(refund).status == "requested"
    # when: the refund is accepted, fails, and only then its older "succeeded" event arrives
    drain_outbox(topics={"payment.refund_requested"})
    made = fresh(refund)
    provider_says_failed(sale, made)
    announced = sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=made.provider_refund_id)
    assert deliver([announced]) == [200]
    drain_outbox(topics={"webhook.received"})
    # then: the failure stands; nothing landed
    after = fresh(refund)
    assert (after.status, after.landed_at) == ("failed", None)
    assert refund_keys(studio) == []
    # and: a failure naming a refund that is none of Darkroom's changes nothing
    assert "not one of Darkroom's refunds" in failure()
