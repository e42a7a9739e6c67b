"""Refunds as the whole payment comes back around them: the whole-payment e-mail tells the whole
payment, not a refund made moot or never sent; the sale page offers no refund once nothing of
the payment is left; a refund whose provider call was cut short (it timed out, or its worker
died) is asked again, not called never sent; an operator's retry racing the whole payment coming
back waits for it and leaves nothing failed (real Postgres and Redis, the sandbox playing the
provider)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.db.models.query import QuerySet

from apps.commerce.errors import CheckoutNotRefundable
from apps.commerce.models import Refund
from apps.commerce.services import payment as payment_service
from apps.commerce.services.payment import refund_retry, refund_submit
from apps.payments.providers.base import ProviderError
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import ask, confirmed, dashboard_refunds_everything, event, fresh, refused, status_of
from tests.web.studio.conftest import StudioPeople, signed_in, text
from tests.web.studio.test_sale_refund_items import lines_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


# --- the whole-payment e-mail tells the whole payment ---------------------------------------


def test_the_whole_payment_email_tells_the_whole_payment_not_a_refused_item_refund_made_moot(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio's refund of the print (25.00) was refused by the provider
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    refused(printed)
    mail.outbox.clear()
    # when: the studio refunds the whole 34.00 in the provider's dashboard; its webhook is
    # processed (the refused refund turns not_needed) and the shopper's e-mail goes out
    dashboard_refunds_everything(sale)
    drain_outbox()
    assert (status_of(studio, sale), fresh(printed).status) == ("refunded", "not_needed")
    # then: the e-mail tells the 34.00 that went back, not the moot refund's 25.00 for the print
    [told] = mail.outbox
    assert told.body.startswith("34.00 EUR of your payment"), told.body


def test_the_whole_payment_email_tells_the_whole_payment_not_an_item_refund_never_sent(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunds the print (25.00); its provider call has not run yet
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    mail.outbox.clear()
    # when: the whole 34.00 is refunded in the dashboard and its webhook processed; then the
    # print's refund message is handled (never sent: not needed), before the shopper's e-mail
    dashboard_refunds_everything(sale)
    drain_outbox(topics={"webhook.received"})
    drain_outbox(topics={"payment.refund_requested"})
    assert fresh(printed).status == "not_needed"
    drain_outbox()
    # then: the e-mail tells the 34.00 that went back and the whole order, not the print alone
    [told] = mail.outbox
    assert told.body.startswith("34.00 EUR of your payment"), told.body


# --- the sale page offers no refund of nothing -----------------------------------------------


def test_the_sale_page_does_not_offer_the_item_left_once_nothing_of_the_payment_is_left(
    studio: StudioPeople, sale: str
) -> None:
    # given: 25.00 of the 34.00 was refunded in the provider's dashboard, and the studio then
    # refunded the download (9.00, all that was left); that refund is with the provider
    event(studio, sale, 2500, refund_id="re_dashboard", own=2500)
    lines = lines_of(studio.org.pk, sale)
    download = ask(studio, sale, [lines["download"].pk])
    assert download.amount_minor == 900
    # when: the studio opens the sale
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{sale}/")
    # then: the service refuses any refund of the print (nothing of the payment is left) ...
    with pytest.raises(CheckoutNotRefundable, match=r"0\.00 EUR"):
        ask(studio, sale, [lines["print"].pk])
    # ... so the page offers none; it does not offer to give back 0.00 EUR for the print
    offered = re.search(r"([0-9.]+ EUR) goes back to the buyer", text(page))
    assert offered is None and f'value="{lines["print"].pk}"' not in text(page), (
        f"the page offers the print's refund ({offered.group(0) if offered else 'a box'}), which the service refuses"
    )


# --- a refund whose call was cut short is not called never sent -------------------------------


class WorkerKilled(BaseException):
    """The worker process dies (SIGKILL, out of memory, a deploy) while the provider call returns:
    nothing after the call runs, and the broker redelivers the message (acks late)."""


@pytest.mark.parametrize(
    "cut_short",
    [
        pytest.param(ProviderError("sandbox: read timed out", provider="sandbox", retryable=True), id="timed out"),
        pytest.param(WorkerKilled(), id="worker died"),
    ],
)
def test_a_refund_made_by_a_call_cut_short_is_not_called_never_sent(
    studio: StudioPeople, sale: str, monkeypatch: pytest.MonkeyPatch, cut_short: BaseException
) -> None:
    # given: the download's refund (9.00) landed; the print's, the order's last item (25.00), is
    # made by the provider, but its call is cut short (a timeout, retried; or the worker dies as
    # the call returns, before writing anything, and the broker redelivers), so it stays `requested`
    lines = lines_of(studio.org.pk, sale)
    confirmed(ask(studio, sale, [lines["download"].pk]), sale)
    printed = ask(studio, sale, [lines["print"].pk])
    real = payment_service.get_provider("sandbox")

    class MadeThenCutShort:
        def refund(self, **kwargs: Any) -> Any:
            real.refund(**kwargs)
            raise cut_short

    monkeypatch.setattr(payment_service, "get_provider", lambda name: MadeThenCutShort())
    with tenant_context(studio.org.pk), pytest.raises(type(cut_short)):
        refund_submit(refund_id=printed.pk)
    monkeypatch.undo()
    # when: the provider's event that the whole payment (34.00) is back arrives, and then the
    # print's message runs again
    event(studio, sale, 3400)
    assert status_of(studio, sale) == "refunded"
    with tenant_context(studio.org.pk):
        again = refund_submit(refund_id=printed.pk)
    # then: the refund is what the provider says it is (made, with its id), not "never sent"
    made = [r["refund_id"] for r in sandbox_provider()._refunds(f"sbx_{sale}") if r["amount_minor"] == 2500]
    assert (again.status, again.provider_refund_id) == ("submitted", made[0]), (
        f"{again.status!r} ({Refund.Status(again.status).label}), provider refund id "
        f"{again.provider_refund_id!r}: the provider made it ({made[0]}) on its first call"
    )


# --- the admin's retry racing the whole payment coming back -----------------------------------


def test_a_refused_refund_retried_by_an_operator_as_the_whole_payment_comes_back_does_not_end_failed(
    studio: StudioPeople, sale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the studio's refund of the whole order (34.00) was refused; the studio then refunds
    # the whole 34.00 in the provider's dashboard, and its webhook is being processed
    whole = ask(studio, sale, None)
    assert (whole.reason, whole.amount_minor) == ("studio", 3400)
    refused(whole)
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=3400, idempotency_key="dashboard-all")
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=made.refund_id)]) == [200]
    # when: an operator runs the admin's "Retry the selected failed refunds" on it at that moment:
    # it commits while the webhook's transaction is landing the payment's refunds
    real_update = QuerySet.update
    retried: list[bool] = []
    competitors: list[threading.Thread] = []

    def operator_retries() -> None:
        try:
            with system_context("test admin"):
                retried.append(refund_retry(refund_id=whole.pk, actor_label="admin:ops"))
        finally:
            connection.close()

    def update(self: QuerySet[Any], **kwargs: Any) -> int:
        done = real_update(self, **kwargs)
        if self.model is Refund and "landed_at" in kwargs and not competitors:
            competitors.append(threading.Thread(target=operator_retries))
            competitors[0].start()
            competitors[0].join(5)  # still waiting after 5 s: it waits for a lock this transaction holds
        return done

    monkeypatch.setattr(QuerySet, "update", update)
    drain_outbox(topics={"webhook.received"})
    monkeypatch.undo()
    assert competitors, "the webhook landed no refund"
    competitors[0].join(60)
    assert status_of(studio, sale) == "refunded"
    # and: the retried refund's message is handled
    drain_outbox()
    # then: nothing is owed (the whole payment is back): the refund is not failed, alerting for
    # ever on a refunded order (an operator's next retry would only be refused again)
    after = fresh(whole)
    assert after.status != "failed", (
        f"retried: {retried}; the refund is {after.status!r} (landed_at {after.landed_at}) on a refunded "
        f"order: {after.last_error}"
    )
