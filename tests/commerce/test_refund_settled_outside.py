"""An operator records a refund as paid back outside the provider (a bank transfer, say): the
admin's "Record the selected refunds as paid back outside the provider" asks how, then
`refund_settle_outside` turns the refund `settled`. A refund the provider left unpaid (refused,
or failed at the provider before it landed) then lands as if the provider had confirmed it; one
that failed after landing counts as given back again. Either way the order's later refunds give
back only what is left, and nothing is settled twice or while another refund awaits the
provider (real Postgres and Redis; the sandbox plays the provider).
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client

from apps.catalog.models import StockRestock
from apps.commerce.errors import RefundNotSettleable
from apps.commerce.models import CheckoutLine, Entitlement, Refund, Transaction
from apps.commerce.services import checkout_refund_request
from apps.commerce.services.payment import gave_back, refund_settle_outside
from apps.payments.providers.base import money_text
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.helpers import drain_outbox
from tests.commerce.refunds import (
    ask,
    confirmed,
    dashboard_refunds_everything,
    fresh,
    late_payment_refund,
    refused,
    status_of,
)
from tests.commerce.test_refund_failed_at_provider import (
    lines_of,
    metric,
    provider_says_failed,
    refund_keys,
    sale_page_rows,
    submitted,
)
from tests.commerce.test_refund_failed_shopper_told import owed_then_last_item_refunded_through_the_provider
from tests.factories.tenancy import UserFactory
from tests.web.studio.conftest import StudioPeople, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

NOTE = "Bank transfer 2026-11-25, ref DR-4471"


def operator() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    return client


def settle_in_admin(client: Client, refund: Refund, note: str) -> str:
    """The admin action: its page asking how, then the answer; the messages shown after."""
    chosen = {"action": "settle_outside", "_selected_action": [str(refund.pk)]}
    asked = client.post("/admin/commerce/refund/", chosen)
    assert asked.status_code == 200 and "How was the shopper paid back?" in asked.content.decode()
    assert money_text(refund.amount_minor, refund.currency) in asked.content.decode()
    answered = client.post("/admin/commerce/refund/", {**chosen, "apply": "1", "note": note}, follow=True)
    assert answered.status_code == 200
    return " ".join(str(m) for m in answered.context["messages"])


def settle(refund: Refund, note: str = NOTE) -> list[str]:
    with system_context("test"):
        return refund_settle_outside(refund_id=refund.pk, note=note, actor_label="test")


def given_back_minor(studio: StudioPeople, checkout_id: str) -> int:
    """What Darkroom counts as given back to the shopper: every refund that gave money back."""
    with tenant_context(studio.org.pk):
        return sum(r.amount_minor for r in Refund.objects.filter(transaction__checkout_id=checkout_id) if gave_back(r))


def live_entitlements(studio: StudioPeople, checkout_id: str) -> int:
    with tenant_context(studio.org.pk):
        return Entitlement.objects.filter(transaction__checkout_id=checkout_id, revoked_at__isnull=True).count()


def settled_audits(refund: Refund) -> list[AuditLog]:
    with system_context("test"):
        return list(AuditLog.objects.filter(action="refund.settled_outside", target_id=str(refund.pk)))


def txn_status(studio: StudioPeople, checkout_id: str) -> str:
    with tenant_context(studio.org.pk):
        return Transaction.objects.get(checkout_id=checkout_id).status


def test_a_refused_item_refund_settled_in_the_admin_lands_and_the_last_item_gets_only_what_is_left(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the download (9.00) and the provider refused it for good
    lines = lines_of(studio, sale)
    download = ask(studio, sale, [lines["download"]])
    refused(download, "charge_disputed")
    assert metric('darkroom_refunds{status="failed"}') == 1
    entitled = live_entitlements(studio, sale)
    mail.outbox.clear()
    # when: the operator pays the shopper by bank transfer and records it in the admin
    said = settle_in_admin(operator(), download, NOTE)
    # then: the refund is settled, landed, saying how, and no longer alerts
    settled = fresh(download)
    assert "recorded as paid back outside the provider" in said
    assert (settled.status, settled.settled_outside_note) == ("settled", NOTE)
    assert settled.landed_at is not None and settled.settled_outside_at is not None
    assert metric('darkroom_refunds{status="failed"}') == 0
    assert metric('darkroom_refunds{status="settled"}') == 1
    # and: its effects landed as if the provider had confirmed it: the download taken back, its
    # credit reversed, the shopper told; the payment stays paid at the provider
    assert live_entitlements(studio, sale) == entitled - 1
    assert refund_keys(studio) == [f"refund:{sale}:{lines['download']}"]
    drain_outbox()
    [told] = mail.outbox
    assert "9.00" in told.body
    assert (status_of(studio, sale), txn_status(studio, sale)) == ("paid", "paid")
    # and: one audit row names the operator and the note
    [audit] = settled_audits(download)
    assert audit.actor_label == "admin:ops" and audit.data["note"] == NOTE
    assert audit.data["previous_status"] == "failed" and audit.data["landed_before"] is False
    # and: the studio's sale page says how it was paid back
    [row] = sale_page_rows(studio, sale)
    assert "Paid back outside Sandbox (local)" in row and "DR-4471" in row
    page = text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))
    assert "Refunded outside the provider" in page.split("<h2>Items</h2>", 1)[1].split("</table>")[0]
    # when: the studio then refunds the print, the order's last item
    printed = ask(studio, sale, [lines["print"]])
    # then: it gives back the print's 25.00 only: the 9.00 went back by transfer
    assert printed.amount_minor == 2500


def test_a_refund_that_failed_after_landing_counts_as_given_back_once_settled(studio: StudioPeople, sale: str) -> None:
    # given: the download's refund (9.00) landed, then failed at the provider (card closed)
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    provider_says_failed(sale, download, reason="lost_or_stolen_card")
    keys = refund_keys(studio)
    landed_at = fresh(download).landed_at
    drain_outbox()
    mail.outbox.clear()
    # when: the operator pays it back by transfer and records it
    effects = settle(download)
    # then: settled, its landing and effects untouched (nothing reversed twice)
    settled = fresh(download)
    assert effects == [f"refund {download.pk} settled outside the provider", "shopper told (checkout.refunded)"]
    assert settled.status == "settled" and settled.landed_at == landed_at
    assert refund_keys(studio) == keys
    # and: the shopper hears the 9.00 was paid back, directly
    drain_outbox()
    [told] = mail.outbox
    assert "9.00 EUR of your payment" in told.body and "paid this back to you directly" in told.body
    [audit] = settled_audits(download)
    assert audit.data["landed_before"] is True and audit.data["previous_status"] == "submitted"
    [row] = sale_page_rows(studio, sale)
    assert "Paid back outside" in row and "has not got this money back" not in row
    # and: the order's last item gets only its own 25.00 (34.00 paid: 9.00 by transfer)
    printed = ask(studio, sale, [lines["print"]])
    assert printed.amount_minor == 2500
    # and: it cannot be settled twice
    with pytest.raises(RefundNotSettleable, match="not one the provider left unpaid"):
        settle(download)
    assert len(settled_audits(download)) == 1


def test_a_refund_failed_at_the_provider_before_landing_settled_outside_refunds_the_whole_order(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the whole order (34.00); the provider accepted it, then it failed
    whole = submitted(studio, sale, None)
    provider_says_failed(sale, whole)
    assert fresh(whole).status == "failed"
    mail.outbox.clear()
    # when: the operator pays the shopper the 34.00 another way and records it
    settle(whole)
    # then: the order is refunded, every item taken back and every credit reversed, the shopper
    # told, while the transaction keeps the provider's view
    assert status_of(studio, sale) == "refunded" and txn_status(studio, sale) == "paid"
    assert live_entitlements(studio, sale) == 0
    assert len(refund_keys(studio)) == 2
    drain_outbox()
    [told] = mail.outbox
    assert "34.00" in told.body
    assert fresh(whole).landed_at is not None


def test_a_whole_order_refund_that_failed_after_landing_can_be_settled(studio: StudioPeople, sale: str) -> None:
    # given: the whole order's refund (34.00) landed (the payment refunded whole at the provider,
    # the order refunded), then failed at the provider
    whole = submitted(studio, sale, None)
    confirmed(whole, sale)
    assert (status_of(studio, sale), txn_status(studio, sale)) == ("refunded", "refunded")
    provider_says_failed(sale, whole, reason="lost_or_stolen_card")
    keys = refund_keys(studio)
    # when: the operator pays the 34.00 back by transfer and records it
    settle(whole)
    # then: it is settled; the order stays refunded and nothing is reversed again
    assert fresh(whole).status == "settled"
    assert status_of(studio, sale) == "refunded" and refund_keys(studio) == keys
    [row] = sale_page_rows(studio, sale)
    assert "Paid back outside" in row


def test_the_last_items_refund_settled_outside_completes_the_order(studio: StudioPeople, sale: str) -> None:
    # given: the download's refund landed at the provider; the print's (25.00, the rest) was refused
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    printed = ask(studio, sale, [lines["print"]])
    refused(printed)
    assert status_of(studio, sale) == "paid"
    # when: the print's 25.00 is paid back by transfer and recorded
    effects = settle(printed)
    # then: the whole payment is back: the order is refunded, the print's credit reversed too
    assert "checkout refunded" in effects
    assert status_of(studio, sale) == "refunded"
    assert len(refund_keys(studio)) == 2


def test_nothing_is_settled_that_the_provider_may_still_pay_or_without_saying_how(
    studio: StudioPeople, sale: str
) -> None:
    lines = lines_of(studio, sale)
    # given: the download's refund is accepted by the provider and awaits its refund event
    download = submitted(studio, sale, [lines["download"]])
    # then: it cannot be settled: the provider may still pay it
    with pytest.raises(RefundNotSettleable, match="not one the provider left unpaid"):
        settle(download)
    # given: the print's refund was refused meanwhile
    printed = ask(studio, sale, [lines["print"]])
    refused(printed)
    # then: it waits for the download's answer (the two may add up to the whole payment)
    with pytest.raises(RefundNotSettleable, match="awaits the provider"):
        settle(printed)
    # and: a blank note is refused by the service and by the admin's form, writing nothing
    confirmed(download, sale)
    with pytest.raises(RefundNotSettleable, match="Say how"):
        settle(printed, note="   ")
    client = operator()
    chosen = {"action": "settle_outside", "_selected_action": [str(printed.pk)], "apply": "1", "note": ""}
    again = client.post("/admin/commerce/refund/", chosen)
    assert again.status_code == 200 and "This field is required" in again.content.decode()
    assert fresh(printed).status == "failed" and settled_audits(printed) == []
    # and: once the download landed, the print settles
    settle(printed)
    assert fresh(printed).status == "settled"


def test_a_settled_refund_always_says_when(studio: StudioPeople, sale: str) -> None:
    download = ask(studio, sale, [lines_of(studio, sale)["download"]])
    with tenant_context(studio.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.filter(pk=download.pk).update(status=Refund.Status.SETTLED)
    with tenant_context(studio.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.filter(pk=download.pk).update(settled_outside_at=download.created_at)


def test_an_owed_refund_the_orders_last_refund_gave_back_through_the_provider_cannot_be_settled_again(
    studio: StudioPeople, sale: str
) -> None:
    # given: the shopper got all 34.00 back through the provider (the last refund included the
    # 9.00 that had failed after landing)
    download = owed_then_last_item_refunded_through_the_provider(studio, sale)
    assert given_back_minor(studio, sale) == 3400
    # and: the studio's sale page says the 9.00 is not owed any more
    rows = sale_page_rows(studio, sale)
    assert not any("The shopper has not got this money back" in row for row in rows)
    assert any("Not owed any more" in row for row in rows)
    # when: the operator, not knowing, pays 9.00 by transfer and records it
    # then: refused: it would give back more than was charged (34.00 + 9.00 of a 34.00 payment),
    # and Darkroom never counts more given back than was charged
    with pytest.raises(RefundNotSettleable):
        settle(download)
    assert given_back_minor(studio, sale) == 3400


def test_settling_the_refund_that_completes_the_order_emails_only_what_it_gave_back(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed through the provider: the shopper was e-mailed 9.00
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    mail.outbox.clear()
    confirmed(download, sale)
    [first] = mail.outbox
    assert "9.00 EUR of your payment" in first.body
    # and: the print's refund (25.00, what is left) was refused by the provider
    printed = ask(studio, sale, [lines["print"]])
    assert printed.amount_minor == 2500
    refused(printed)
    mail.outbox.clear()
    # when: the operator pays the 25.00 by transfer and records it (the order turns refunded)
    settle(printed)
    drain_outbox()
    assert status_of(studio, sale) == "refunded"
    # then: the shopper's e-mail says 25.00 (the rest), not the whole 34.00 again (43.00 in all)
    [told] = mail.outbox
    assert "25.00 EUR of your payment" in told.body, told.body


def test_settling_a_refund_that_failed_before_it_landed_is_not_counted_as_failed_after_landing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund was accepted, then failed at the provider before it landed
    download = submitted(studio, sale, [lines_of(studio, sale)["download"]])
    provider_says_failed(sale, download)
    assert fresh(download).status == "failed"
    before = metric("darkroom_refunds_failed_after_landing_total")
    # when: the operator pays it back by transfer and records it
    settle(download)
    assert fresh(download).status == "settled"
    # then: the counter behind DarkroomRefundFailedAfterLanding (alert on any increase) does not move
    assert metric("darkroom_refunds_failed_after_landing_total") == before
    # and: the admin does not list it among the refunds that failed after landing
    after_landing = operator().get("/admin/commerce/refund/", {"failed_at_provider": "after_landing"})
    assert [r.pk for r in after_landing.context["cl"].result_list] == []


def test_the_email_of_a_refund_paid_back_by_transfer_does_not_say_it_goes_back_the_way_they_paid(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) was refused by the provider
    download = ask(studio, sale, [lines_of(studio, sale)["download"]])
    refused(download)
    mail.outbox.clear()
    # when: the operator pays it by bank transfer and records it; the shopper is e-mailed
    settle(download)
    drain_outbox()
    [told] = mail.outbox
    # then: the e-mail does not tell them to look for it on their card or account
    assert "The money goes back the way you paid" not in told.body, told.body
    assert "paid this back to you directly" in told.body


def print_restocks(studio: StudioPeople, checkout_id: str) -> int:
    """How many times the sale's print was put back in stock."""
    with tenant_context(studio.org.pk):
        product_id = CheckoutLine.objects.get(checkout_id=checkout_id, kind="print").product_id
        return StockRestock.objects.filter(product_id=product_id).count()


def test_a_dashboard_refund_after_a_settled_whole_refund_does_not_restock_the_prints_again(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the whole order, its print back in stock; the provider refused it
    with tenant_context(studio.org.pk):
        whole = checkout_refund_request(
            tenant_id=studio.org.pk, checkout_id=sale, actor_label="test", restock_prints=True
        )
    refused(whole)
    # and: the operator paid the 34.00 by transfer and recorded it: the order is refunded, the print
    # back in stock once
    settle(whole)
    drain_outbox()
    assert status_of(studio, sale) == "refunded"
    assert print_restocks(studio, sale) == 1
    # when: the studio, not knowing, also refunds the 34.00 in the provider's dashboard
    mail.outbox.clear()
    dashboard_refunds_everything(sale)
    drain_outbox()
    # then: the print is not put back in stock a second time (one print sold, one returned), and
    # the shopper is not told of the whole refund again
    assert print_restocks(studio, sale) == 1
    assert mail.outbox == []
    assert txn_status(studio, sale) == "refunded"


def refunded_mails() -> list[str]:
    return [m.body for m in mail.outbox if "was refunded" in m.subject]


def test_settling_a_late_payments_refund_that_failed_after_landing_emails_once(studio: StudioPeople) -> None:
    # given: a checkout expired unpaid; the payment (9.00) arrived late; its refund landed at the
    # provider, then failed there
    checkout_id, refund = late_payment_refund(studio)
    confirmed(refund, checkout_id)
    assert fresh(refund).landed_at is not None and txn_status(studio, checkout_id) == "refunded"
    provider_says_failed(checkout_id, fresh(refund), reason="lost_or_stolen_card")
    drain_outbox()
    mail.outbox.clear()
    # when: the operator pays the 9.00 by transfer and records it
    settle(fresh(refund))
    drain_outbox()
    # then: one e-mail, 9.00, paid directly; the checkout stays expired
    [body] = refunded_mails()
    assert "Your payment of 9.00 EUR" in body and "paid this back to you directly" in body, body
    assert status_of(studio, checkout_id) == "expired"
    assert fresh(refund).status == "settled"


def test_settling_a_whole_studio_refund_that_failed_after_landing_emails_once(studio: StudioPeople, sale: str) -> None:
    whole = submitted(studio, sale, None)
    confirmed(whole, sale)
    provider_says_failed(sale, fresh(whole), reason="lost_or_stolen_card")
    drain_outbox()
    keys = refund_keys(studio)
    mail.outbox.clear()
    effects = settle(fresh(whole))
    drain_outbox()
    [body] = refunded_mails()
    assert "34.00 EUR of your payment" in body and "paid this back to you directly" in body, body
    assert next(m.subject for m in mail.outbox if "was refunded" in m.subject).startswith("Your payment")
    assert refund_keys(studio) == keys, effects
    assert status_of(studio, sale) == "refunded"
