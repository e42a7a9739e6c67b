"""Sales, wallets, payout requests and payout destinations through the dashboard."""

from __future__ import annotations

from typing import Any

import pytest

from apps.commerce.models import CheckoutLine
from apps.commerce.services import platform_fee_minor
from apps.ledger.models import LedgerAccount
from apps.ledger.projection import projection_rebuild
from apps.ops.killswitch import kill_switch_engage
from apps.outbox.models import OutboxMessage
from apps.payouts.models import Payout, PayoutDestination
from apps.payouts.services import TOPIC_BATCH_REQUESTED, TOPIC_WALLET_REQUESTED, payout_destination_set
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog, User
from tests.commerce.fixtures import checkout_body, empty_broker, post_checkout  # noqa: F401 - fixture by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid
from tests.commerce.refunds import ask
from tests.factories.commerce import make_shop
from tests.payouts.helpers import make_wallet
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_member, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def payout_requests(topic: str = TOPIC_WALLET_REQUESTED) -> int:
    with system_context("test"):
        return OutboxMessage.objects.filter(topic=topic).count()


def payouts_of_account(account_id: int) -> list[Payout]:
    with system_context("test"):
        return list(Payout.objects.filter(account_id=account_id))


def test_a_paid_checkout_shows_in_sales_and_in_the_photographers_wallet(studio: StudioPeople) -> None:
    # given: a priced shop whose photographer is a member of the studio
    shop = make_shop(org=studio.org)
    new_member(studio.org, "photographer", shop.photographer)
    # when: a shopper buys the download and pays at the sandbox (webhook, consumers)
    created = post_checkout(studio.bundle.client(), checkout_body(shop, {"product": shop.download.pk}))
    assert created.status_code == 201, created.content
    checkout_id = created.json()["id"]
    drain_outbox()
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox()
    net = shop.prices["download"] - platform_fee_minor(shop.prices["download"])
    expected = f"{net // 100}.{net % 100:02d} EUR"
    # then: the owner's sales list shows the paid checkout
    sales = text(signed_in(studio.owner).get("/studio/sales/"))
    assert (
        "ann@example.test" in sales and "9.00 EUR" in sales and 'class="status-paid" data-label="Status">Paid<' in sales
    )
    # and: the photographer sees the credit as recorded before the projector ran, then in the balance
    photographer = signed_in(shop.photographer)
    before = text(photographer.get("/studio/wallet/"))
    assert f"Plus {expected} just recorded" in before
    sale = f"Sale: Download, photo {shop.photo.pk} at {shop.event.title}"
    assert f"{sale} (order <code>{checkout_id[:8]}</code>)" in before
    projection_rebuild()
    after = text(photographer.get("/studio/wallet/"))
    assert f'<span class="figure">{expected}</span>' in after and "just recorded" not in after
    assert expected in text(photographer.get("/studio/"))


def test_a_photographer_requests_a_payout_once_and_only_their_wallet_is_paid(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: a photographer with a projected balance above the minimum and a destination, and
    # due wallets of a colleague and of another studio
    wallet = make_wallet(studio.org, credited=5000)
    colleague = make_wallet(studio.org, credited=6000)
    elsewhere = make_wallet(other_studio.org, credited=7000)
    projection_rebuild()
    client = signed_in(wallet.owner)
    page = client.get("/studio/wallet/")
    assert "50.00 EUR" in text(page)
    nonce = form_nonce_on(page, "/studio/wallet/payout-request")
    # when: the request form is submitted twice
    form = {"nonce": nonce, "account": str(wallet.account.pk)}
    first = client.post("/studio/wallet/payout-request", form)
    second = client.post("/studio/wallet/payout-request", form)
    # then: one request for this wallet (no platform-wide batch), audited for the photographer
    assert first.status_code == second.status_code == 303
    assert (payout_requests(), payout_requests(TOPIC_BATCH_REQUESTED)) == (1, 0)
    with tenant_context(studio.org.pk):
        audit = AuditLog.objects.get(action="payout.request")
    assert audit.actor_user_id == wallet.owner.pk and audit.data["balance_minor"] == 5000
    assert "Payout requested" in text(client.get(first["Location"]))
    # and: its consumer pays this wallet alone, which the page then lists
    assert drain_outbox(topics={TOPIC_WALLET_REQUESTED}) == [TOPIC_WALLET_REQUESTED]
    assert [p.amount_minor for p in payouts_of_account(wallet.account.pk)] == [5000]
    assert payouts_of_account(colleague.account.pk) == payouts_of_account(elsewhere.account.pk) == []
    listed = text(client.get("/studio/wallet/"))
    assert "Your payouts" in listed and "50.00 EUR" in listed and "Pending" in listed
    # and: asking again while that payout is pending is refused, nothing more published
    again = client.post("/studio/wallet/payout-request", {"nonce": "p" * 24, "account": str(wallet.account.pk)})
    assert again.status_code == 409 and "already being sent" in text(again)
    assert payout_requests() == 1


def test_payout_requests_follow_the_payout_rules(studio: StudioPeople) -> None:
    # below the minimum
    poor = make_wallet(studio.org, credited=500)
    # without a destination
    homeless = make_wallet(studio.org, credited=5000, destination=None)
    projection_rebuild()
    low = signed_in(poor.owner).post(
        "/studio/wallet/payout-request", {"nonce": "a" * 24, "account": str(poor.account.pk)}
    )
    assert low.status_code == 409 and "payouts start at 10.00 EUR" in text(low)
    nowhere = signed_in(homeless.owner).post(
        "/studio/wallet/payout-request", {"nonce": "b" * 24, "account": str(homeless.account.pk)}
    )
    assert nowhere.status_code == 409
    assert "A studio owner (you, if you are one) sets yours on the wallet page" in text(nowhere)
    # someone else's wallet is not a choice
    theirs = signed_in(poor.owner).post(
        "/studio/wallet/payout-request", {"nonce": "c" * 24, "account": str(homeless.account.pk)}
    )
    assert theirs.status_code == 400
    assert payout_requests() == 0


def test_the_payouts_kill_switch_stops_requests_with_a_clear_message(studio: StudioPeople) -> None:
    wallet = make_wallet(studio.org, credited=5000)
    projection_rebuild()
    kill_switch_engage(capability="payouts", reason="provider incident", actor_label="test")
    client = signed_in(wallet.owner)
    page = text(client.get("/studio/wallet/"))
    assert "Payouts are paused by the platform's operators" in page and 'disabled aria-disabled="true"' in page
    response = client.post("/studio/wallet/payout-request", {"nonce": "n" * 24, "account": str(wallet.account.pk)})
    assert response.status_code == 503
    assert "Payouts (batches and provider calls) is switched off by the operators" in text(response)
    assert payout_requests() == 0
    assert "Payouts are paused" in text(client.get("/studio/"))


def test_owners_set_payout_destinations_and_photographers_cannot(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get("/studio/wallet/"), "/studio/wallet/destinations")
    form = {"nonce": nonce, "member": str(studio.photographer.pk), "provider": "sandbox", "destination": " bank-7 "}
    assert owner.post("/studio/wallet/destinations", form).status_code == 303
    assert owner.post("/studio/wallet/destinations", form).status_code == 303
    with tenant_context(studio.org.pk):
        row = PayoutDestination.objects.get(owner=studio.photographer)
        audits = AuditLog.objects.filter(action="payout_destination.set").count()
    assert (row.provider, row.destination, audits) == ("sandbox", "bank-7", 1)
    # a destination the provider's adapter rejects is shown on the field, nothing written
    bad = owner.post(
        "/studio/wallet/destinations",
        {"nonce": "x" * 24, "member": str(studio.staff.pk), "provider": "stripe", "destination": "not-an-account"},
    )
    assert bad.status_code == 400 and "Invalid payout destination" in text(bad)
    # photographers see their own destination but cannot set any
    photographer = signed_in(studio.photographer)
    page = text(photographer.get("/studio/wallet/"))
    assert "bank-7" in page and 'action="/studio/wallet/destinations"' not in page
    refused = photographer.post(
        "/studio/wallet/destinations",
        {"nonce": "y" * 24, "member": str(studio.photographer.pk), "provider": "sandbox", "destination": "mine"},
    )
    assert refused.status_code == 403
    with tenant_context(studio.org.pk):
        assert PayoutDestination.objects.get(owner=studio.photographer).destination == "bank-7"


def test_a_wallet_shows_what_refunds_under_way_hold_and_a_request_leaves_it(
    studio: StudioPeople, sale: str, settings: Any
) -> None:
    # given: the sale's photographer (8.10 + 22.50 EUR credited) is a member with a destination,
    # and the studio has asked to refund the print (22.50 net), not landed yet
    settings.PAYOUT_MINIMUM_MINOR = 100
    with tenant_context(studio.org.pk):
        lines = {line.kind: line for line in CheckoutLine.objects.filter(checkout_id=sale)}
        photographer = User.objects.get(pk=lines["print"].photographer_id)
        new_member(studio.org, "photographer", photographer)
        payout_destination_set(tenant=studio.org, owner=photographer, provider="sandbox", destination="bank-1")
        account = LedgerAccount.objects.get(kind=LedgerAccount.Kind.WALLET, owner=photographer)
    ask(studio, sale, [lines["print"].pk])
    projection_rebuild()
    client = signed_in(photographer)
    # when: they open their wallet
    page = client.get("/studio/wallet/")
    # then: the balance is all of it, and the refund's share is said to stay
    assert '<span class="figure">30.60 EUR</span>' in text(page)
    assert "22.50 EUR of it is held for refunds under way" in text(page)
    # when: they ask to be paid
    nonce = form_nonce_on(page, "/studio/wallet/payout-request")
    asked = client.post("/studio/wallet/payout-request", {"nonce": nonce, "account": str(account.pk)})
    # then: they are told what is sent and what stays
    assert asked.status_code == 303
    told = text(client.get(asked["Location"]))
    assert "Payout requested: 8.10 EUR is sent" in told
    assert "(22.50 EUR stays in your wallet for refunds under way)" in told
