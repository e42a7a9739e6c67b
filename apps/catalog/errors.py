"""Business refusals of the catalog, rendered as RFC 7807 problems by the API."""

from __future__ import annotations

from apps.core.problems import DomainError, InvalidInput, NotFound


class EventNotFound(NotFound):
    """The request names an event this studio does not have (another studio's events are
    answered the same way)."""

    slug = "event-not-found"
    title = "Event not found"
    what_to_do = "Check the event's id: GET /api/v1/events lists the studio's events."


class ProductNotFound(NotFound):
    """The request names a product this studio does not have (another studio's products are
    answered the same way)."""

    slug = "product-not-found"
    title = "Product not found"
    what_to_do = "Check the product's id: GET /api/v1/events/{id}/products lists an event's products."


class EventSlugTaken(DomainError):
    """A new event's slug (its part of the shop's address) is one another event of the studio
    already has; slugs differing only in case are the same slug. Nothing was written."""

    status_code = 409
    slug = "event-slug-taken"
    title = "Event slug already used"
    what_to_do = "Send the event again with another slug."


class ProductConflict(DomainError):
    """The event already sells that product (a photo's download, a print of a photo in that size,
    or the event's "All photos" item), or the SKU is another product's (SKUs differing only in
    case are the same SKU). Also when downloads are offered while other products of the studio
    were being added at the same moment. Nothing was written; `detail` says which."""

    status_code = 409
    slug = "product-conflict"
    title = "Product already exists"
    what_to_do = (
        "Use the product the event already has (GET /api/v1/events/{id}/products lists them), or send "
        "another SKU. When `detail` says products were being added, send the same request again."
    )


class PriceListCurrencyMismatch(DomainError):
    """Prices were sent in a currency other than the one the event is priced in: all of an
    event's prices are in one currency. Nothing was written."""

    status_code = 409
    slug = "price-list-currency-mismatch"
    title = "Price list currency is fixed"
    what_to_do = (
        "Send the prices in the event's currency (`detail` names it), or first change the event's "
        "currency with POST /api/v1/events/{id}/prices/currency, which removes all its prices."
    )


class PriceListCurrencyChanged(DomainError):
    """A currency change named the currency the caller saw, and the event is priced in another
    one now (someone changed it meanwhile): nothing is changed."""

    status_code = 409
    slug = "price-list-currency-changed"
    title = "The currency changed"
    when_it_happens = (
        "A currency change sent `expected_currency`, and the event is priced in another currency now: "
        "someone changed it after you last read it. Nothing was changed, so prices set since are kept."
    )
    what_to_do = (
        "Read the event's prices again (GET /api/v1/events/{id}/prices), then decide whether to change "
        "the currency, sending the currency you saw."
    )


class PriceListMissing(DomainError):
    """A currency change on an event without prices: there is no currency to change (the first
    prices choose it)."""

    status_code = 409
    slug = "price-list-missing"
    title = "No prices yet"
    what_to_do = "Set the event's first prices (POST /api/v1/events/{id}/prices) in the currency you want."
    message = "This event has no prices yet: choose its currency with its first prices."


class PriceNotSet(DomainError):
    """The product has no price yet: its event has no price for products of its kind (and, for a
    print, its size), so it is not sold. `detail` names the product."""

    status_code = 409
    slug = "price-not-set"
    title = "No price for this product"
    what_to_do = (
        "Set the price (POST /api/v1/events/{id}/prices), or leave the product out of the order; "
        "GET /api/v1/events/{id}/prices shows the prices the event has."
    )


class AccessCodeRequired(DomainError):
    """A shop page of an event protected by an access code was opened without the code, or with
    a wrong one."""

    status_code = 403
    slug = "access-code-required"
    title = "Access code required"
    what_to_do = "Enter the access code the studio gave out for the event."


class UploadRefused(InvalidInput):
    """A photo upload was refused: the file is not a readable image in a format Darkroom takes, or
    it has more pixels than Darkroom takes (`errors` names the field `image`). On the studio's upload
    page, where several files go in one form, one refused file refuses the whole form. Nothing
    was uploaded; `detail` says which file and why."""

    slug = "upload-refused"
    title = "Upload refused"
    what_to_do = (
        "Send a readable image in one of the formats `detail` lists, within its limit of pixels. On the "
        "upload page, leave out or replace the refused files and send the form again."
    )


class UploadTooLarge(DomainError):
    status_code = 413
    slug = "payload-too-large"
    title = "Payload too large"


class NotAPhotographer(DomainError):
    status_code = 403
    slug = "permission-denied"
    title = "Permission denied"


class ProductNotRestockable(DomainError):
    """A restock names a product without limited stock (a download or bulk product)."""

    status_code = 422
    slug = "product-not-restockable"
    title = "Only prints have stock"
    when_it_happens = (
        'A restock names a product that has no stock to add to: a download or an "All photos" item, '
        "which are never sold out. Nothing was written."
    )
    what_to_do = 'Restock only prints; downloads and "All photos" items need none.'


class StockLimitExceeded(DomainError):
    """A restock would take a print's initial quantity past STOCK_MAX_UNITS."""

    status_code = 422
    slug = "stock-limit-exceeded"
    title = "Stock limit exceeded"
    when_it_happens = (
        "A restock would take the print past the most stock one print may have been given in all "
        "(`detail` gives the number; every restock counts, sold units included). Nothing was written."
    )
    what_to_do = "Restock by fewer units; `detail` gives the most a print may have."


class PhotoNotFound(NotFound):
    """The request names a photo this studio does not have (another studio's photos are answered
    the same way), or, in the shop, one its event does not show."""

    slug = "photo-not-found"
    title = "No such photo in this studio"
    what_to_do = "Check the photo's id: GET /api/v1/events/{id}/photos lists an event's photos."


class PhotoAlreadyWithdrawn(DomainError):
    """The photo was withdrawn already (`detail` says when): it is off sale and hidden, and
    photo matching no longer searches it. A withdrawal is not undone."""

    status_code = 409
    slug = "photo-already-withdrawn"
    title = "Photo already withdrawn"
    what_to_do = "Nothing is needed: the photo is withdrawn. To sell it again, upload it again as a new photo."


class InvalidWithdrawal(InvalidInput):
    """A withdrawal without a reason, or with one too long; `errors` names the field."""

    slug = "invalid-withdrawal"
    title = "Invalid withdrawal"
    what_to_do = "Say in one line of up to 300 characters why the photo is withdrawn, and send it again."
