"""The studio's sale page after a refund (user walk): the note that refunded items turn refunded
once the provider confirms shows only while a refund waits on the provider; a refund that failed
says why in plain words, for the reasons the provider adapters pass on (Stripe's and the
sandbox's `failure_reason` codes), with a neutral sentence for any other, and a refusal says the
provider refused it; the provider's own words stay for operators, in the admin (real Postgres
and Redis; the sandbox plays the provider)."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask, confirmed, fresh, refused
from tests.commerce.test_refund_failed_at_provider import lines_of, provider_says_failed, submitted
from tests.commerce.test_refund_superseding import refund_rows
from tests.factories.tenancy import UserFactory
from tests.web.studio.conftest import StudioPeople, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

WAITING_NOTE = "turn refunded when Sandbox (local) confirms the refund"


def sale_page(studio: StudioPeople, sale: str) -> str:
    return " ".join(html.unescape(text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))).split())


def admin_page(refund_id: int) -> str:
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    response = operator.get(f"/admin/commerce/refund/{refund_id}/change/")
    assert response.status_code == 200
    return text(response)


def test_the_note_about_the_provider_confirming_shows_only_while_a_refund_waits_on_it(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the download; the provider has not confirmed it yet
    refund = ask(studio, sale, [lines_of(studio, sale)["download"]])
    # then: the page says refunded items turn refunded once the provider confirms
    assert WAITING_NOTE in sale_page(studio, sale)
    # when: the provider confirms the refund
    confirmed(refund, sale)
    assert fresh(refund).landed_at is not None
    # then: nothing waits on the provider any more, and the note is gone
    page = sale_page(studio, sale)
    assert "Refunded: Sandbox (local) confirmed it" in page
    assert WAITING_NOTE not in page


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (
            "expired_or_canceled_card",
            "The shopper's card has expired or was cancelled, so it could not take the money.",
        ),
        ("lost_or_stolen_card", "The shopper's card was reported lost or stolen, so it could not take the money."),
        ("declined", "The shopper's bank declined the refund."),
        ("weird_code_42", "The money did not reach the shopper's card or account."),
    ],
)
def test_a_refund_that_failed_at_the_provider_says_why_in_plain_words(
    studio: StudioPeople, sale: str, code: str, said: str
) -> None:
    # given: the studio refunded the download and the provider accepted it
    refund = submitted(studio, sale, [lines_of(studio, sale)["download"]])
    # when: the provider says the refund failed, giving its code
    provider_says_failed(sale, refund, reason=code)
    # then: the sale page says why in plain words, and not the provider's code
    [row] = refund_rows(sale_page(studio, sale))
    assert f"Failed: Sandbox (local) accepted it, then could not complete it. {said}" in row, row
    assert f"({code})" not in row and "after accepting it (" not in row
    # and: operators still see the provider's code, in the admin
    assert code in admin_page(refund.pk)


def test_a_landed_refund_that_then_failed_says_why_in_plain_words(studio: StudioPeople, sale: str) -> None:
    # given: the download's refund landed
    refund = submitted(studio, sale, [lines_of(studio, sale)["download"]])
    confirmed(refund, sale)
    # when: the provider then says it failed (the card was reported stolen)
    provider_says_failed(sale, refund, reason="lost_or_stolen_card")
    # then: the row says so in plain words, and what to do
    [row] = refund_rows(sale_page(studio, sale))
    assert (
        "Failed after Sandbox (local) confirmed it: The shopper's card was reported lost or stolen, so it could "
        "not take the money. The shopper has not got this money back, and its items were taken back: settle it "
        "with them." in row
    ), row
    assert "lost_or_stolen_card" not in row
    assert "lost_or_stolen_card" in admin_page(refund.pk)


def test_a_refused_refund_says_the_provider_refused_it_not_the_providers_message(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded the download and the provider refused it, saying why in its own terms
    refund = ask(studio, sale, [lines_of(studio, sale)["download"]])
    raw = "sandbox: refund exceeds the payment (3400 of 3400 EUR refunded already, 900 more asked)"
    refused(refund, error=raw)
    # then: the sale page says the provider refused it, in plain words
    [row] = refund_rows(sale_page(studio, sale))
    assert "Failed: Sandbox (local) refused it." in row, row
    assert "sandbox:" not in row and "3400" not in row
    assert WAITING_NOTE not in sale_page(studio, sale)
    # and: operators see the provider's words in the admin
    assert "refund exceeds the payment" in admin_page(refund.pk)
