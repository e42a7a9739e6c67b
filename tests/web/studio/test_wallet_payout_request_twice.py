"""The wallet page after "Request payout": a payout asked for and not made yet is on its way (no
second button, and a second request refused, writing nothing); the form names what a request
pays now (the balance less what is held for refunds under way); each payout entry says which
payout it was."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import dateformat, timezone

from apps.commerce.models import CheckoutLine
from apps.ledger.projection import projection_rebuild
from apps.outbox.models import OutboxMessage
from apps.payouts.models import Payout, PayoutDestination
from apps.payouts.services import TOPIC_WALLET_REQUESTED, payout_submit
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask
from tests.payouts.helpers import Wallet, make_wallet, post, sale_to_wallet
from tests.payouts.test_wallet_request import consume, request
from tests.web.studio.conftest import StudioPeople, signed_in, text
from tests.web.studio.test_wallet_entries import descriptions
from tests.web.studio.test_wallet_payout_offer import BUTTON, why_not

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


@pytest.fixture(autouse=True)
def payout_minimum(settings: Any) -> None:
    settings.PAYOUT_MINIMUM_MINOR = 1000


def requests_written() -> tuple[int, int]:
    """(request messages, request audit rows)."""
    with system_context("test: requests"):
        return (
            OutboxMessage.objects.filter(topic=TOPIC_WALLET_REQUESTED).count(),
            AuditLog.objects.filter(action="payout.request").count(),
        )


def menu_options(page: str) -> list[str]:
    form = re.search(r'<form[^>]*action="/studio/wallet/payout-request".*?</form>', page, re.S)
    return [" ".join(o.split()) for o in re.findall(r"<option value=\"\d+\"[^>]*>(.*?)</option>", form.group(0))]


def test_a_second_click_on_request_payout_is_refused_as_already_requested(studio: StudioPeople) -> None:
    # given: a photographer with 44.10 EUR and a payout destination
    wallet = make_wallet(studio.org, credited=4410)
    projection_rebuild()
    client = signed_in(wallet.owner)
    assert BUTTON in text(client.get("/studio/wallet/"))

    # when: they request a payout, and land on the wallet page
    first = client.post(
        "/studio/wallet/payout-request", {"nonce": "a" * 24, "account": str(wallet.account.pk)}, follow=True
    )
    page = text(first)

    # then: it says the payout was requested, offers no second one, and says why
    assert "Payout requested: 44.10 EUR is sent to your payout destination shortly" in page
    assert BUTTON not in page
    assert why_not(page) == [
        "A payout of this wallet was just requested: it is made shortly, after any payout run in progress, "
        "and listed below."
    ]
    assert "Your balance is 0.00 EUR" not in page

    # when: the button is clicked again from a tab opened before
    second = client.post("/studio/wallet/payout-request", {"nonce": "b" * 24, "account": str(wallet.account.pk)})

    # then: 409, saying a payout is already asked for (not the minimum); nothing written
    assert second.status_code == 409
    refused = text(second)
    assert "A payout of this wallet was just requested" in refused
    assert "payout minimum" not in refused and "Sales that just happened" not in refused
    assert requests_written() == (1, 1)

    # when: the request is made into a payout, and the provider pays it before its debit is counted
    with system_context("test"):
        [message] = list(OutboxMessage.objects.filter(topic=TOPIC_WALLET_REQUESTED))
    consume(message)
    page = text(client.get("/studio/wallet/"))
    assert BUTTON not in page and why_not(page) == [
        "A payout of this wallet is already being sent; it is listed below."
    ]
    with tenant_context(studio.org.pk):
        [payout] = Payout.objects.filter(account=wallet.account)
        assert payout_submit(payout_id=payout.pk).status == Payout.Status.PAID
    # then: still no button, and a request sent anyway is refused
    assert BUTTON not in text(client.get("/studio/wallet/"))
    again = client.post("/studio/wallet/payout-request", {"nonce": "c" * 24, "account": str(wallet.account.pk)})
    assert again.status_code == 409 and requests_written() == (1, 1)


def test_the_form_names_what_a_request_pays_now_when_refunds_hold_part_of_the_balance(studio: StudioPeople) -> None:
    # given: a photographer's sale (30.60 EUR credited), the studio's refund of its print (22.50)
    # under way, and a later sale credited 14.40: 45.00 EUR, of which 22.50 held
    checkout_id, wallet = sale_to_wallet(studio)
    with tenant_context(studio.org.pk):
        print_line = CheckoutLine.objects.get(checkout_id=checkout_id, kind="print").pk
    ask(studio, checkout_id, [print_line])
    post(studio.org, wallet.account, 1440, kind="credit")
    projection_rebuild()
    client = signed_in(wallet.owner)

    # when: they open the wallet
    page = text(client.get("/studio/wallet/"))

    # then: the menu and the sentence name what a request pays now, not the whole balance
    assert menu_options(page) == ["EUR wallet: 22.50 EUR now"]
    sentence = " ".join(page.split())
    assert (
        "A payout requested now sends 22.50 EUR: your balance of 45.00 EUR less 22.50 EUR held for refunds under way."
        in sentence
    )
    assert "sends your whole balance" not in sentence
    # and: the request pays what was named
    done = client.post(
        "/studio/wallet/payout-request", {"nonce": "d" * 24, "account": str(wallet.account.pk)}, follow=True
    )
    assert "Payout requested: 22.50 EUR is sent" in text(done)


def test_the_menu_names_the_balance_when_nothing_is_held(studio: StudioPeople) -> None:
    wallet = make_wallet(studio.org, credited=4410)
    projection_rebuild()
    page = text(signed_in(wallet.owner).get("/studio/wallet/"))
    assert menu_options(page) == ["EUR wallet: 44.10 EUR now"]
    assert "A payout requested now sends 44.10 EUR, your whole balance." in " ".join(page.split())


def test_two_payouts_of_one_amount_and_the_one_that_came_back_are_told_apart(studio: StudioPeople) -> None:
    # given: two payouts of 20.00 EUR to one destination, the second refused by its provider and
    # credited back (sent while the destination was a Stripe account Stripe's adapter refuses)
    wallet = make_wallet(studio.org, credited=2000, destination="owner-bank")
    projection_rebuild()
    assert consume_one_request(wallet).startswith("paid 2000")
    with system_context("test"):
        first = Payout.objects.get(account=wallet.account)
    with tenant_context(studio.org.pk):
        assert payout_submit(payout_id=first.pk).status == Payout.Status.PAID
    post(studio.org, wallet.account, 2000, kind="credit")
    projection_rebuild()
    with system_context("test: the destination stops working"):
        PayoutDestination.objects.filter(owner=wallet.owner).update(provider="stripe", destination="cus_123")
    assert consume_one_request(wallet).startswith("paid 2000")
    with system_context("test"):
        second = Payout.objects.exclude(pk=first.pk).get(account=wallet.account)
    with tenant_context(studio.org.pk):
        assert payout_submit(payout_id=second.pk).status == Payout.Status.FAILED
    with system_context("test: both read as paid to one destination"):
        Payout.objects.filter(pk=second.pk).update(provider="sandbox", destination="owner-bank")

    # when: the photographer opens the wallet
    described = descriptions(text(signed_in(wallet.owner).get("/studio/wallet/")))

    # then: each payout entry names its payout by its short id and when it was made; the return
    # names the second
    def named(payout: Payout) -> str:
        made = dateformat.format(timezone.localtime(payout.created_at), "j M Y, H:i")
        return f"(payout {str(payout.pk)[-8:]} of {made})"

    assert [d for d in described if d.startswith("Payout")] == [
        f"Payout returned, not paid to Sandbox: owner-bank {named(second)}",
        f"Payout to Sandbox: owner-bank {named(second)}",
        f"Payout to Sandbox: owner-bank {named(first)}",
    ]
    assert named(first) != named(second)


def consume_one_request(wallet: Wallet) -> str:
    """Request a payout of `wallet` and consume that request (the newest message)."""
    request(wallet)
    with system_context("test"):
        message = OutboxMessage.objects.filter(topic=TOPIC_WALLET_REQUESTED).order_by("-created_at", "-id").first()
    assert message is not None
    return consume(message)
