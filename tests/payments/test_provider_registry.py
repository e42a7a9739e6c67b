"""Provider registry (settings -> adapters) and the shared money/header helpers."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal

import pytest
from django.test import override_settings

from apps.core.currencies import CURRENCY_EXPONENTS, UnsupportedCurrency
from apps.payments.providers import PROVIDER_NAMES, get_provider, sandbox_webhook_sender
from apps.payments.providers.base import (
    UnknownProviderError,
    WebhookSignatureError,
    currency_exponent,
    header_value,
    major_to_minor,
    minor_to_major,
    money_text,
)
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.sandbox import SandboxProvider
from apps.payments.providers.stripe import StripeProvider


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("stripe", StripeProvider),
        ("flutterwave", FlutterwaveProvider),
        ("paypal", PayPalProvider),
        ("sandbox", SandboxProvider),
    ],
)
def test_every_provider_name_resolves_to_its_adapter(name, cls):
    provider = get_provider(name)
    assert isinstance(provider, cls)
    assert provider.name == name
    assert get_provider(name) is provider
    assert name in PROVIDER_NAMES


def test_unknown_provider_is_a_clear_404_error():
    with pytest.raises(UnknownProviderError, match="unknown payment provider 'square'; expected one of stripe"):
        get_provider("square")
    assert UnknownProviderError.status_code == 404


def test_settings_feed_the_adapters_and_a_change_rebuilds_them():
    body = b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}'
    now = int(time.time())
    header = f"t={now},v1=" + hmac.new(b"whsec_rotated", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookSignatureError):
        get_provider("stripe").verify_webhook(body=body, headers={"Stripe-Signature": header})
    with override_settings(STRIPE_WEBHOOK_SECRETS=["whsec_old", "whsec_rotated"]):
        get_provider("stripe").verify_webhook(body=body, headers={"Stripe-Signature": header})
    with override_settings(PAYPAL_CERT_HOSTS="certs.example.test, other.example.test"):
        paypal = get_provider("paypal")
        assert isinstance(paypal, PayPalProvider)
        assert paypal.cert_hosts == {"certs.example.test", "other.example.test"}


def test_default_paypal_cert_allow_list():
    paypal = get_provider("paypal")
    assert isinstance(paypal, PayPalProvider)
    assert paypal.cert_hosts == {"api.paypal.com", "api.sandbox.paypal.com"}


@override_settings(
    SANDBOX_WEBHOOK_SECRET="s3cret",
    SANDBOX_WEBHOOK_URL="http://127.0.0.1:8000/webhooks/sandbox",
    SANDBOX_WEBHOOK_DUPLICATES=3,
    SANDBOX_WEBHOOK_SHUFFLE=True,
    SANDBOX_WEBHOOK_DELAY_SECONDS=1.5,
)
def test_sandbox_sender_is_configured_from_settings():
    sender = sandbox_webhook_sender()
    assert (sender.secret, sender.url, sender.duplicates, sender.shuffle, sender.delay_seconds) == (
        "s3cret",
        "http://127.0.0.1:8000/webhooks/sandbox",
        3,
        True,
        1.5,
    )


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(12345, "USD", "123.45"), (5, "eur", "0.05"), (500, "JPY", "500"), (1234, "KWD", "1.234"), (0, "USD", "0.00")],
)
def test_minor_and_major_units_convert_exactly_both_ways(minor, currency, major):
    assert minor_to_major(minor, currency) == major
    assert major_to_minor(major, currency) == minor
    assert major_to_minor(Decimal(major), currency) == minor


@pytest.mark.parametrize(("value", "currency"), [("1.234", "USD"), ("1.5", "JPY"), ("NaN", "USD"), (1.5, "USD")])
def test_inexact_or_float_amounts_are_refused(value, currency):
    with pytest.raises(ValueError):
        major_to_minor(value, currency)


@pytest.mark.parametrize("value", ["1e999999999", "1e999990", Decimal("-1e999990"), "1e30"])
def test_amounts_beyond_any_price_are_refused_at_once(value):
    # An amount with a huge exponent overflowed the Decimal context (decimal.Overflow, not a
    # ValueError: the webhook endpoint answered 500) or took minutes to turn into an int.
    with pytest.raises(ValueError, match="not an amount"):
        major_to_minor(value, "EUR")


@pytest.mark.parametrize("currency", ["US", "usd1", "€€€", ""])
def test_currency_codes_are_validated(currency):
    with pytest.raises(ValueError):
        minor_to_major(100, currency)


@pytest.mark.parametrize(
    ("minor", "currency", "major"), [(1500, "UGX", "1500"), (5000, "XOF", "5000"), (1, "ngn", "0.01")]
)
def test_conversions_read_the_exponent_from_the_currency_table(minor, currency, major):
    assert minor_to_major(minor, currency) == major
    assert major_to_minor(major, currency) == minor
    assert currency_exponent(currency) == CURRENCY_EXPONENTS[currency.upper()]


@pytest.mark.parametrize("currency", ["XYZ", "eue"])
def test_no_amount_is_guessed_into_minor_units_of_a_currency_outside_the_table(currency):
    with pytest.raises(UnsupportedCurrency):
        major_to_minor("13", currency)
    with pytest.raises(UnsupportedCurrency):
        currency_exponent(currency)


def test_old_amounts_in_a_code_outside_the_table_are_shown_as_they_were_entered():
    # rows written before the table (any three letters, read with 2 decimals) stay readable
    assert minor_to_major(1300, "XYZ") == "13.00"
    assert money_text(1300, "XYZ") == "13.00 XYZ"


def test_header_lookup_ignores_case():
    assert header_value({"Stripe-Signature": "x"}, "stripe-signature") == "x"
    assert header_value({"VERIF-HASH": "y"}, "verif-hash") == "y"
    assert header_value({}, "verif-hash") is None
