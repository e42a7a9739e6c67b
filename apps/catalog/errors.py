"""Business refusals of the catalog, rendered as RFC 7807 problems by the API."""

from __future__ import annotations

from apps.core.problems import DomainError, InvalidInput, NotFound


class EventNotFound(NotFound):
    slug = "event-not-found"
    title = "Event not found"


class ProductNotFound(NotFound):
    slug = "product-not-found"
    title = "Product not found"


class EventSlugTaken(DomainError):
    status_code = 409
    slug = "event-slug-taken"
    title = "Event slug already used"


class ProductConflict(DomainError):
    status_code = 409
    slug = "product-conflict"
    title = "Product already exists"


class PriceListCurrencyMismatch(DomainError):
    status_code = 409
    slug = "price-list-currency-mismatch"
    title = "Price list currency is fixed"


class PriceListCurrencyChanged(DomainError):
    """A currency change named the currency the caller saw, and the event is priced in another
    one now (someone changed it meanwhile): nothing is changed."""

    status_code = 409
    slug = "price-list-currency-changed"
    title = "The currency changed"


class PriceListMissing(DomainError):
    """A currency change on an event without prices: there is no currency to change (the first
    prices choose it)."""

    status_code = 409
    slug = "price-list-missing"
    title = "No prices yet"
    message = "This event has no prices yet: choose its currency with its first prices."


class PriceNotSet(DomainError):
    status_code = 409
    slug = "price-not-set"
    title = "No price for this product"


class AccessCodeRequired(DomainError):
    status_code = 403
    slug = "access-code-required"
    title = "Access code required"


class UploadRefused(InvalidInput):
    slug = "upload-refused"
    title = "Upload refused"


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


class StockLimitExceeded(DomainError):
    """A restock would take a print's initial quantity past STOCK_MAX_UNITS."""

    status_code = 422
    slug = "stock-limit-exceeded"
    title = "Stock limit exceeded"


class PhotoNotFound(NotFound):
    slug = "photo-not-found"
    title = "No such photo in this studio"


class PhotoAlreadyWithdrawn(DomainError):
    status_code = 409
    slug = "photo-already-withdrawn"
    title = "Photo already withdrawn"


class InvalidWithdrawal(InvalidInput):
    """A withdrawal without a reason, or with one too long; `errors` names the field."""

    slug = "invalid-withdrawal"
    title = "Invalid withdrawal"
