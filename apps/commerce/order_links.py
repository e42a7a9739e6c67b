"""The shopper's signed order link: `/s/<studio>/orders/<token>` opens one checkout's page from
any browser (apps/web/shop/views/orders.py).

The token is the order's credential: a `Signer` (SECRET_KEY, salt below) over {tenant, checkout},
like the attendee's link (apps/notifications/selectors.py). It does not expire, because the link
in an old receipt must still work; what it grants is seeing that one checkout's page, whose
download links are minted fresh and expire on their own (DOWNLOAD_URL_MAX_AGE_SECONDS). It
works only under the studio that sold the checkout: the tenant inside the token must be the
studio of the URL.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing
from django.urls import reverse

from apps.commerce.errors import CheckoutNotFound

ORDER_LINK_SALT = "darkroom.commerce.order-link"


class OrderLinkInvalid(CheckoutNotFound):
    """A tampered or malformed order token, or another studio's: to the shopper, no such order."""

    slug = "order-link-invalid"
    title = "This order link is not valid"
    when_it_happens = (
        'A link to an order\'s page in the shop (from a receipt or a "Find my orders" e-mail) is not '
        "valid: mistyped, cut short, or for another studio's shop."
    )
    what_to_do = (
        'Open the link from the e-mail again, whole, or ask for the links again with "Find my orders" in '
        "the studio's shop, with the e-mail address the order was placed with."
    )


def order_token(*, tenant_id: int, checkout_id: uuid.UUID | str) -> str:
    return signing.Signer(salt=ORDER_LINK_SALT).sign_object({"t": int(tenant_id), "c": uuid.UUID(str(checkout_id)).hex})


def order_link(*, studio_slug: str, tenant_id: int, checkout_id: uuid.UUID | str) -> str:
    """Absolute URL (on DARKROOM_PUBLIC_BASE_URL) of the checkout's order link, for e-mails."""
    token = order_token(tenant_id=tenant_id, checkout_id=checkout_id)
    path = reverse("shop:order-link", kwargs={"studio_slug": studio_slug, "token": token})
    return f"{settings.DARKROOM_PUBLIC_BASE_URL.rstrip('/')}{path}"


def order_token_checkout_id(*, tenant_id: int, token: str) -> uuid.UUID:
    """The checkout a valid token of this tenant names (whether it exists is the caller's to
    check). Raises OrderLinkInvalid (tampered, malformed, or signed for another tenant)."""
    try:
        data = signing.Signer(salt=ORDER_LINK_SALT).unsign_object(token)
        signed_tenant, checkout_id = int(data["t"]), uuid.UUID(hex=str(data["c"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise OrderLinkInvalid("This order link is not valid.") from exc
    if signed_tenant != tenant_id:
        raise OrderLinkInvalid("This order link is not valid.")
    return checkout_id
