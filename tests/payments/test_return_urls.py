"""The return URLs a provider session gets (one URL, told apart by `darkroom_return`), kept byte for
byte otherwise, and each adapter's reading of the URL the shopper comes back to, in the provider's
own format: Stripe's and the sandbox's success/cancel URLs, PayPal's `token`/`PayerID` added to
its return URL, Flutterwave's one `redirect_url` with its `status`, `tx_ref` and `transaction_id`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from apps.payments.providers.registry import PROVIDER_NAMES, provider_class
from apps.payments.providers.returns import ShopperReturn, return_url_marked


def query_of(url: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}


@pytest.mark.parametrize(
    ("url", "paid"),
    [
        ("https://shop.example/o/1", "https://shop.example/o/1?darkroom_return=paid"),
        ("https://shop.example/o/1?lang=en", "https://shop.example/o/1?lang=en&darkroom_return=paid"),
        (
            "https://shop.example/o/1?s={CHECKOUT_SESSION_ID}&q=a%20b#top",
            "https://shop.example/o/1?s={CHECKOUT_SESSION_ID}&q=a%20b&darkroom_return=paid#top",
        ),
        ("https://shop.example/o/1?darkroom_return=cancelled&x=1", "https://shop.example/o/1?x=1&darkroom_return=paid"),
    ],
)
def test_the_marker_is_added_and_nothing_else_of_the_url_changes(url: str, paid: str) -> None:
    assert return_url_marked(url, ShopperReturn.PAID) == paid
    assert return_url_marked(paid, None) == url.replace("darkroom_return=cancelled&", "")


@pytest.mark.parametrize("provider", ["stripe", "paypal", "sandbox"])
def test_the_success_url_says_paid_and_the_cancel_url_does_not(provider: str) -> None:
    base = "https://shop.example/s/studio/checkouts/c1/"
    adapter = provider_class(provider)
    assert adapter.return_says_paid(query_of(return_url_marked(base, ShopperReturn.PAID)))
    assert not adapter.return_says_paid(query_of(return_url_marked(base, ShopperReturn.CANCELLED)))
    assert not adapter.return_says_paid(query_of(base))


def test_paypal_returns_with_its_token_and_payer_id_are_read_by_the_marker() -> None:
    # PayPal appends the order id as `token` (and, once approved, `PayerID`) to either URL.
    paypal = provider_class("paypal")
    success = return_url_marked("https://shop.example/o?x=1", ShopperReturn.PAID)
    cancel = return_url_marked("https://shop.example/o?x=1", ShopperReturn.CANCELLED)
    approved = f"{success}&token=5O190127TN364715T&PayerID=FSMVU44LF3YUS"
    cancelled = f"{cancel}&token=5O190127TN364715T"
    assert paypal.return_says_paid(query_of(approved))
    assert not paypal.return_says_paid(query_of(cancelled))


@pytest.mark.parametrize(
    ("flutterwave_query", "paid"),
    [
        ("status=successful&tx_ref=c1&transaction_id=2784792", True),
        ("status=completed&tx_ref=c1&transaction_id=2784792", True),
        ("status=cancelled&tx_ref=c1", False),
        ("status=failed&tx_ref=c1&transaction_id=2784793", False),
        ("", False),
        # its one redirect carries no marker of Darkroom's; one typed in is not Flutterwave's word
        ("darkroom_return=paid&status=cancelled&tx_ref=c1", False),
    ],
)
def test_flutterwave_is_read_by_its_own_status(flutterwave_query: str, paid: bool) -> None:
    url = f"https://shop.example/s/studio/checkouts/c1/?{flutterwave_query}"
    assert provider_class("flutterwave").return_says_paid(query_of(url)) is paid


def test_every_provider_has_a_class() -> None:
    assert {name: provider_class(name).__name__ for name in PROVIDER_NAMES} == {
        "stripe": "StripeProvider",
        "flutterwave": "FlutterwaveProvider",
        "paypal": "PayPalProvider",
        "sandbox": "SandboxProvider",
    }
