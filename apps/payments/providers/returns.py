"""Where a provider sends the shopper back, and what that return says.

A checkout has one return URL (its `return_url`, else CHECKOUT_RETURN_URL). The provider session
gets it twice, told apart by Darkroom's own query parameter `darkroom_return`: `paid` in the
success URL (Stripe Checkout's `success_url`, PayPal's `return_url`, the sandbox's Pay), and
`cancelled` in the cancel URL (Stripe's `cancel_url`, PayPal's `cancel_url`, the sandbox's way
back without paying and its Fail). Flutterwave takes one `redirect_url` for every outcome and
appends its own `status` (`successful`, `cancelled`, ...), `tx_ref` and `transaction_id`: it is
sent the URL without the parameter, and its `status` tells the return apart
(`FlutterwaveProvider.return_says_paid`).

The parameter is added to the URL as written: nothing else of it is re-encoded, so the providers'
own additions still work (Stripe replaces a literal `{CHECKOUT_SESSION_ID}` in it, PayPal appends
`token` and `PayerID`, Flutterwave its parameters above).

A return is never proof of payment: anyone can open the success URL. It may change what a page
says while it waits; only the provider's webhook pays, grants and writes.
"""

from __future__ import annotations

from enum import StrEnum

RETURN_PARAMETER = "darkroom_return"


class ShopperReturn(StrEnum):
    """How the shopper left the provider's page, as the URL they came back to says."""

    PAID = "paid"
    CANCELLED = "cancelled"


def return_url_marked(url: str, outcome: ShopperReturn | None) -> str:
    """`url` with `darkroom_return=<outcome>` as its query's last parameter (None: without it).
    A `darkroom_return` already in the query is replaced; every other byte of the URL, fragment
    included, is kept as it is."""
    rest, hash_mark, fragment = url.partition("#")
    path, _, query = rest.partition("?")
    params = [part for part in query.split("&") if part and part.partition("=")[0] != RETURN_PARAMETER]
    if outcome is not None:
        params.append(f"{RETURN_PARAMETER}={outcome.value}")
    return path + ("?" + "&".join(params) if params else "") + hash_mark + fragment
