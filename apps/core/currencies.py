"""The currencies Darkroom sells in, with their ISO 4217 minor-unit exponents.

`CURRENCY_EXPONENTS` is the one table of them: a studio may price an event only in one of these
codes (`apps.catalog.services.price_list_set` checks it, so the API, the studio's form and any
other caller agree), and every conversion between minor and major units
(`apps.payments.providers.base`: `major_to_minor`, `minor_to_major`, `money_text`) reads its
exponent here. Each code is a currency at least one of the providers (Stripe, PayPal,
Flutterwave) charges in; its exponent is ISO 4217's (JPY 0, EUR 2, KWD 3). To sell in another
currency, add it here with its ISO exponent: nothing else guesses one.

The database only checks the shape of a code (three capital letters): rows written before this
table existed may hold a code outside it, which pages still show (see `minor_to_major`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

_TWO_DECIMALS = (
    "AED",
    "ARS",
    "AUD",
    "BDT",
    "BGN",
    "BRL",
    "BWP",
    "CAD",
    "CHF",
    "CNY",
    "COP",
    "CZK",
    "DKK",
    "EGP",
    "ETB",
    "EUR",
    "GBP",
    "GHS",
    "HKD",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "KES",
    "LKR",
    "MAD",
    "MUR",
    "MWK",
    "MXN",
    "MYR",
    "NAD",
    "NGN",
    "NOK",
    "NZD",
    "PEN",
    "PHP",
    "PKR",
    "PLN",
    "QAR",
    "RON",
    "SAR",
    "SEK",
    "SGD",
    "THB",
    "TRY",
    "TWD",
    "TZS",
    "UAH",
    "USD",
    "XCD",
    "ZAR",
    "ZMW",
)
_NO_DECIMALS = (
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
)
_THREE_DECIMALS = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")

CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        **dict.fromkeys(_TWO_DECIMALS, 2),
        **dict.fromkeys(_NO_DECIMALS, 0),
        **dict.fromkeys(_THREE_DECIMALS, 3),
    }
)


class UnsupportedCurrency(ValueError):
    """A code that is not in `CURRENCY_EXPONENTS` (a typo, or a currency Darkroom does not sell in)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(unsupported_currency_message(code))


def unsupported_currency_message(code: str) -> str:
    """What a studio is told when it names a currency outside the table."""
    return f"{code} is not a currency Darkroom can sell in."


def currency_supported(code: str) -> bool:
    """True for an uppercase ISO 4217 code in the table ("EUR"); False for anything else, also
    "eur" (callers uppercase what people type) and non-strings."""
    return isinstance(code, str) and code in CURRENCY_EXPONENTS


def currency_exponent(code: str) -> int:
    """The number of decimals of a currency of the table: "EUR" -> 2, "JPY" -> 0, "KWD" -> 3.
    Raises UnsupportedCurrency for any other code; never guesses."""
    exponent = CURRENCY_EXPONENTS.get(code) if isinstance(code, str) else None
    if exponent is None:
        raise UnsupportedCurrency(str(code))
    return exponent
