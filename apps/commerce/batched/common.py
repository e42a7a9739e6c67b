"""Names shared by the batched strategy, its writer and its reads (see the package docstring)."""

from __future__ import annotations

from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation
from apps.outbox.services import outbox_publish

TOPIC_RESERVATIONS_PENDING = "inventory.reservations_pending"
TOPIC_RESERVATION_DECIDED = "inventory.reservation_decided"

RESERVATIONS = InventoryReservation._meta.db_table
CHECKOUTS = Checkout._meta.db_table
LINES = CheckoutLine._meta.db_table
STOCK = "catalog_stock"
PENDING = InventoryReservation.Status.PENDING.value
CONFIRMED = InventoryReservation.Status.CONFIRMED.value
REJECTED = InventoryReservation.Status.REJECTED.value
RELEASED = InventoryReservation.Status.RELEASED.value

# The advisory lock key of a SKU (64-bit hash of the writer's lock name), `{}` = the SQL for the
# product id. A collision with an unrelated key can only make a writer poll a little longer,
# never break the protocol.
ADVISORY_KEY = "hashtextextended('inventory:sku:' || {}::text, 0)"


def writer_lock_name(product_id: int) -> str:
    """The fenced lock (Redis key and lease row) of the SKU's single writer."""
    return f"inventory:sku:{product_id}"


def publish_wake_up(*, tenant_id: int, product_id: int, reason: str) -> None:
    """Ask for the SKU's writer through the outbox (joins the caller's transaction)."""
    outbox_publish(
        topic=TOPIC_RESERVATIONS_PENDING,
        tenant_id=tenant_id,
        aggregate_type="product",
        aggregate_id=product_id,
        payload={"tenant_id": tenant_id, "product_id": product_id, "reason": reason},
    )
