"""A refund the provider accepted and then could not complete (Stripe `refund.failed`: the
shopper's card was closed meanwhile; the money went back to the merchant): the provider's event,
signed and delivered to the webhook endpoint and applied by the webhook consumer, turns the
refund `failed` (alerted, its items refundable again), or, for one that had landed already,
leaves it to an operator; never twice, whatever order the events come in: a failed attempt's
older "succeeded" event lands nothing (a whole refund neither), is not taken for a dashboard
refund, and lands no retry of it (real Postgres and Redis; the sandbox plays the provider).
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.test import Client

from apps.commerce.errors import RefundNotRecordedYet
from apps.commerce.models import CheckoutLine, Entitlement, Refund, Transaction
from apps.commerce.services import refund_apply_provider_failure
from apps.commerce.services.payment import refund_retry, refundable_lines
from apps.ledger.models import LedgerEvent
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import ask, at_provider, confirmed, dashboard_refund, fresh, status_of
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
    assert "Failed: Sandbox (local) accepted it, then could not complete it." in row
    assert "card has expired or was cancelled" in row and "expired_or_canceled_card" not in row
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
    assert "Failed after Sandbox (local) confirmed it" in row and "reported lost or stolen" in row
    assert "The shopper has not got this money back" in row
    page = text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))
    assert (
        "Refund failed at the provider after it was confirmed"
        in page.split("<h2>Items</h2>", 1)[1].split("</table>")[0]
    )
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


# --- a failed attempt's older "succeeded" event, delivered late ------------------------------


def older_succeeded_event_arrives(checkout_id: str, provider_refund_id: str) -> None:
    """The provider's "refund succeeded" event for `provider_refund_id`, sent before its failure
    but delivered only now (Stripe's `refund.created`/`refund.updated` with the refund
    `succeeded`; Stripe does not guarantee the order of events, and retries a delivery for days)."""
    announced = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=provider_refund_id)
    assert deliver([announced]) == [200]
    drain_outbox()


def txn_status(studio: StudioPeople, checkout_id: str) -> str:
    with tenant_context(studio.org.pk):
        return Transaction.objects.get(checkout_id=checkout_id).status


def revoked(studio: StudioPeople, checkout_id: str) -> int:
    with tenant_context(studio.org.pk):
        return Entitlement.objects.filter(checkout_id=checkout_id, revoked_at__isnull=False).count()


def test_a_whole_order_refund_that_failed_is_not_landed_by_its_older_succeeded_event(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the whole order (34.00); the provider accepted it, then said it
    # failed (the shopper's card was closed): the money went back to the studio's balance
    refund = submitted(studio, sale, None)
    provider_says_failed(sale, refund)
    assert (fresh(refund).status, txn_status(studio, sale)) == ("failed", "paid")
    mail.outbox.clear()
    # when: the refund's older "succeeded" event is delivered only now
    older_succeeded_event_arrives(sale, refund.provider_refund_id)
    # then: the failure stands: the sale stays paid, the shopper keeps the downloads, no credit
    # is reversed and nobody tells the shopper money came back
    after = fresh(refund)
    seen = {
        "refund": after.status,
        "transaction": txn_status(studio, sale),
        "sale": status_of(studio, sale),
        "downloads revoked": revoked(studio, sale),
        "credits reversed": refund_keys(studio),
        "mails": [m.subject for m in mail.outbox],
    }
    assert seen == {
        "refund": "failed",
        "transaction": "paid",
        "sale": "paid",
        "downloads revoked": 0,
        "credits reversed": [],
        "mails": [],
    }


def test_a_retried_refund_is_not_doubled_by_the_failed_attempts_older_succeeded_event(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) was accepted and then failed at the provider
    download, printed = lines_of(studio, sale)["download"], lines_of(studio, sale)["print"]
    refund = submitted(studio, sale, [download])
    failed_attempt = refund.provider_refund_id
    provider_says_failed(sale, refund)
    assert fresh(refund).status == "failed"
    # and: an operator retried it and the provider accepted the new refund
    with tenant_context(studio.org.pk):
        assert refund_retry(refund_id=refund.pk, actor_label="operator", actor_user=None)
    drain_outbox(topics={"payment.refund_requested"})
    retried = fresh(refund)
    assert retried.status == "submitted" and retried.provider_refund_id != failed_attempt
    mail.outbox.clear()
    # when: the failed attempt's older "succeeded" event is delivered only now
    older_succeeded_event_arrives(sale, failed_attempt)
    # then: it is not taken for 9.00 the studio refunded in the provider's dashboard: that refund
    # gave nothing back, and the shopper is not told it did
    # and: the print (25.00), refunded next as the order's last item, gives back all of its 25.00
    # (with the retried 9.00 the provider's refunds then add up to the 34.00 the shopper paid)
    seen = {
        "recorded as refunded at the provider": at_provider(studio, sale),
        "mails": [m.subject.split(" (")[0] for m in mail.outbox],
        "the print's refund": ask(studio, sale, [printed]).amount_minor,
    }
    assert seen == {"recorded as refunded at the provider": [], "mails": [], "the print's refund": 2500}


def test_the_sale_page_does_not_say_items_were_taken_back_for_a_dashboard_refund_that_failed(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded 9.00 in the provider's own dashboard: Darkroom recorded it as
    # refunded at the provider and, not knowing which items it was for, revoked nothing
    refund_id = dashboard_refund(sale, 900)
    drain_outbox()
    assert at_provider(studio, sale) == [(900, refund_id, True)]
    # when: the provider then says that refund failed (the shopper's card was closed)
    failed = sandbox_provider().fail_refund(reference=f"sbx_{sale}", refund_id=refund_id)
    assert deliver([failed]) == [200]
    drain_outbox()
    # then: the shopper still has every download, and the sale page does not tell the studio
    # otherwise (it would settle with the shopper for items the shopper never lost)
    assert revoked(studio, sale) == 0
    [row] = sale_page_rows(studio, sale)
    assert "Failed after" in row
    assert "taken back" not in row, row


def test_a_retry_not_sent_yet_is_not_landed_by_the_failed_attempts_older_succeeded_event(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) was accepted and then failed at the provider, and an
    # operator retried it: it waits to be sent again
    download = lines_of(studio, sale)["download"]
    refund = submitted(studio, sale, [download])
    failed_attempt = refund.provider_refund_id
    provider_says_failed(sale, refund)
    with tenant_context(studio.org.pk):
        assert refund_retry(refund_id=refund.pk, actor_label="operator", actor_user=None)
    assert fresh(refund).status == "requested"
    mail.outbox.clear()
    # when: the failed attempt's older "succeeded" event is delivered only now
    announced = sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=failed_attempt)
    assert deliver([announced]) == [200]
    drain_outbox(topics={"webhook.received", "checkout.refunded"})
    # then: nothing lands: no money has gone back yet (the retry is not even sent), so the
    # download still works, its credit stands and the shopper is not told it was refunded
    seen = {
        "landed": fresh(refund).landed_at is not None,
        "downloads revoked": revoked(studio, sale),
        "credits reversed": len(refund_keys(studio)),
        "mails": [m.subject.split(" (")[0] for m in mail.outbox],
    }
    assert seen == {"landed": False, "downloads revoked": 0, "credits reversed": 0, "mails": []}


# --- settling, and the deploy of the columns ---------------------------------------------------


def test_settling_a_refund_that_failed_after_landing_at_the_provider_does_not_shrink_the_next_refund(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed (download revoked), then failed at the provider
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    provider_says_failed(sale, download, reason="lost_or_stolen_card")
    # and: the operator settles it with the provider: 9.00 refunded again in its dashboard (the
    # shopper's new card), whose event Darkroom records as a part refunded at the provider
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=900, idempotency_key="settle-download")
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=made.refund_id)]) == [200]
    drain_outbox()
    # when: the studio then refunds the print (25.00), the order's last item
    printed = ask(studio, sale, [lines["print"]])
    # then: it gives back the print's 25.00: the failed 9.00 never reached the shopper, the
    # dashboard's 9.00 did (34.00 paid, 34.00 back, nothing kept)
    assert printed.amount_minor == 2500, (
        f"the print's refund gives back {printed.amount_minor}: the failed download refund and the "
        "dashboard refund settling it are both counted as given back"
    )


def test_code_of_the_release_before_0021_can_still_record_a_refund_during_the_deploy(
    studio: StudioPeople, sale: str
) -> None:
    # given: migration 0021 applied while the previous release still runs (it knows neither
    # `provider_failed_at` nor `failed_provider_refund_ids`, so its INSERT names neither column)
    refund = ask(studio, sale, [lines_of(studio, sale)["download"]])
    with system_context("test"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'commerce_refund'"
            " AND column_name NOT IN ('id', 'idempotency_key', 'provider_failed_at', 'failed_provider_refund_ids')"
        )
        columns = ", ".join(name for (name,) in cursor.fetchall())
        # when: the previous release writes a refund (a copy of this one, under another key)
        try:
            with transaction.atomic():
                cursor.execute(
                    f"INSERT INTO commerce_refund ({columns}, idempotency_key)"
                    f" SELECT {columns}, 'old-release' FROM commerce_refund WHERE id = %s",
                    [refund.pk],
                )
            refused = ""
        except IntegrityError as exc:
            refused = f"{type(exc).__name__}: {exc}"
    # then: it is written, as before the migration
    assert refused == "", f"the previous release cannot record a refund after 0021: {refused}"
