"""The table of currencies Darkroom sells in: every currency the providers matter for is there
with ISO 4217's exponent, and nothing else has one."""

from __future__ import annotations

import pytest

from apps.core.currencies import CURRENCY_EXPONENTS, UnsupportedCurrency, currency_exponent, currency_supported

# ISO 4217 minor units of the currencies the platform's providers must be able to sell in.
ISO_EXPONENTS = {
    **dict.fromkeys(
        ("EUR USD GBP CHF SEK NOK DKK PLN CZK HUF NGN GHS KES ZAR TZS CAD AUD NZD SGD HKD INR BRL MXN AED").split(),
        2,
    ),
    **dict.fromkeys("JPY KRW UGX RWF XOF XAF".split(), 0),
    **dict.fromkeys("KWD BHD JOD OMR TND".split(), 3),
}


@pytest.mark.parametrize(("code", "exponent"), sorted(ISO_EXPONENTS.items()))
def test_the_providers_currencies_have_their_iso_exponent(code: str, exponent: int) -> None:
    assert currency_supported(code)
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["XYZ", "EUE", "AAA", "XTS", "XAU", "eur", "EU", "", "EURO"])
def test_anything_else_is_not_a_currency_darkroom_sells_in(code: str) -> None:
    assert not currency_supported(code)
    with pytest.raises(UnsupportedCurrency, match="is not a currency Darkroom can sell in"):
        currency_exponent(code)


def test_the_table_holds_uppercase_codes_with_iso_exponents_only() -> None:
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in CURRENCY_EXPONENTS)
    assert set(CURRENCY_EXPONENTS.values()) == {0, 2, 3}
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["XYZ"] = 2  # type: ignore[index]
