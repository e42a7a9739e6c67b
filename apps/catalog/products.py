"""Changing products after they exist: stop or resume selling one, restock a print (offering
every photo of an event as a download: `apps.catalog.downloads`).

Both services use plain `@transaction.atomic`: they join the transaction of the Idempotency-Key
protocol (API) or of `submit_once` (studio forms), so their rows commit with the key row and a
retried request or a double-clicked form has one effect. Each runs in `tenant_context(tenant_id)`.

**Deactivating** (`product_set_active`) only flips `Product.active`. Every path that starts a
sale reads it: `checkout_create` selects active products only (`_PRODUCTS_FOR_SALE_SQL`) and
refuses any other line with `InvalidCheckoutLine` (400 `invalid-checkout-line`), the shop lists
and prices active products only, and a cart holding one shows it as no longer on sale. What was
sold before stays sold: checkouts, reservations still waiting for the SKU's writer, and
entitlements never look at `active`. The linearisation point is the checkout's read: a checkout
whose read saw the product active before the deactivation committed is one of those earlier
sales (its lines commit; the product row lock taken here, FOR NO KEY UPDATE, does not conflict
with the key-share lock of their foreign keys, so checkouts never wait for it).

**Restocking** (`stock_restock`) adds `n` units to `quantity` AND `initial_quantity` in ONE
relative statement, `UPDATE catalog_stock SET quantity = quantity + n, initial_quantity =
initial_quantity + n ...`, and records a `StockRestock` row in the same transaction. Why it
cannot race the SKU's single fenced writer (`apps.commerce.batched.writer`), nor `row_lock`:

1. Every transaction that changes `catalog_stock` holds the row's lock until it commits: the
   batched writer reads `quantity` with `SELECT ... FOR UPDATE` and decrements in the same
   transaction; `row_lock` checkouts do the same; releases and this restock are UPDATEs (row
   lock implied). So a writer's decision, made on the quantity it read, and its decrement are
   never separated by a restock: the restock either committed before the writer's FOR UPDATE
   returned (the writer then reads the restocked quantity: READ COMMITTED re-reads the newest
   committed version of a locked row) or waits for the writer's commit and then applies its
   `+ n` to the decremented value (PostgreSQL re-evaluates an UPDATE on the newest row version).
   Each change is a delta on the committed value, so they commute: the final quantity is
   `initial + Σ restocks - Σ confirmed + Σ released` in any interleaving.
2. `stock + Σ confirmed = initial` (`manage.py inventory_reconcile`) holds before a restock and
   both sides grow by `n`, so it holds after it; the check constraints (`0 <= quantity <=
   initial_quantity`) hold as well. No oversell: only decisions subtract, under the lock.
3. The restock needs no lease: it decides nothing from a value it read (it adds blindly), so
   there is nothing for a fence to protect. It leaves `epoch` alone, like releases, so the
   writer's `AND epoch <= :mine` guard never refuses a batch because of a restock; taking the
   writer's lease instead would make a restock fail or wait exactly while the SKU sells.
4. It locks only the stock row (and inserts its audit row), so it adds no lock-order cycle:
   the writer takes lease -> reservations -> stock, checkouts take checkout -> stock.

Both strategies are therefore safe with the same statement, and switching INVENTORY_STRATEGY
never changes a restock (tests/commerce/test_restock_concurrency.py restocks while hundreds of
reservations drain, under both). Checkouts already told "sold out" stay so: a rejected
reservation is final (its checkout charged only confirmed lines, or closed as `sold_out`), and
reviving it would charge a shopper who was told otherwise. Reservations still `pending` when a
restock commits are decided by the writer against the restocked quantity; they already have a
wake-up, so the restock publishes none.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.errors import ProductNotFound, ProductNotRestockable, StockLimitExceeded
from apps.catalog.models import Product, ProductKind, Stock, StockRestock
from apps.core.problems import InvalidInput
from apps.core.request_context import get_request_id
from apps.tenancy.context import tenant_context
from apps.tenancy.models import User
from apps.tenancy.services import audit_record

# One restock adds at most this many units (the same bound as a new print's stock).
RESTOCK_MAX_UNITS = 10_000_000
# A print's initial quantity never grows past this: far from bigint overflow, far past any run.
STOCK_MAX_UNITS = 1_000_000_000

PRODUCT_DEACTIVATED = "catalog.product_deactivated"
PRODUCT_REACTIVATED = "catalog.product_reactivated"


@dataclass(frozen=True)
class Actor:
    """Who asks for a catalog change, for the audit trail: a signed-in member (`user`) or an
    integrator's API key (`user` None). `label` names either (`user:<pk>`, `api_key:<id>`)."""

    label: str
    user: User | None = None

    @classmethod
    def member(cls, user: User) -> Actor:
        return cls(label=f"user:{user.pk}", user=user)


@transaction.atomic
def product_set_active(*, tenant_id: int, product_id: int, active: bool, actor: Actor) -> Product:
    """Stop (`active=False`) or resume selling a product; audited when it changes anything.

    Joins the caller's transaction. Locks the product row (FOR NO KEY UPDATE, so concurrent
    togglers serialise and each change is audited once, while checkouts inserting lines that
    reference the product are not blocked). Setting the state it already has is a no-op (no
    audit row). Existing checkouts, reservations and entitlements are not touched. Raises
    ProductNotFound (unknown, or another tenant's: RLS hides it).
    """
    with tenant_context(tenant_id):
        product = Product.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=product_id).first()
        if product is None:
            raise ProductNotFound(f"Product {product_id} does not exist.")
        if product.active == active:
            return product
        product.active = active
        product.save(update_fields=["active"])
        audit_record(
            action=PRODUCT_REACTIVATED if active else PRODUCT_DEACTIVATED,
            tenant_id=tenant_id,
            actor_user=actor.user,
            actor_label=actor.label,
            target_type="product",
            target_id=str(product.pk),
            data={"sku": product.sku, "active": active},
        )
        return product


_RESTOCK_SQL = f"""
    UPDATE {Stock._meta.db_table}
       SET quantity = quantity + %(add)s, initial_quantity = initial_quantity + %(add)s, updated_at = %(now)s
     WHERE tenant_id = %(tenant_id)s AND product_id = %(product_id)s AND initial_quantity <= %(ceiling)s
 RETURNING quantity, initial_quantity
"""


@transaction.atomic
def stock_restock(*, tenant_id: int, product_id: int, add_quantity: int, actor: Actor) -> StockRestock:
    """Add `add_quantity` units to a print's stock (quantity and initial quantity) and audit it.

    Safe under both inventory strategies without the writer's lease: see the module docstring.
    Joins the caller's transaction; holds the stock row lock from its UPDATE to that
    transaction's commit (callers keep it short). Inactive prints may be restocked (ahead of
    reactivating them). Raises InvalidInput (`add_quantity` not in 1..RESTOCK_MAX_UNITS),
    ProductNotFound (unknown, or another tenant's), ProductNotRestockable (not a print),
    StockLimitExceeded (the initial quantity would pass STOCK_MAX_UNITS); each writes nothing.
    """
    if not 0 < add_quantity <= RESTOCK_MAX_UNITS:
        raise InvalidInput(
            f"add_quantity must be between 1 and {RESTOCK_MAX_UNITS}.",
            extra={"errors": {"add_quantity": [f"Between 1 and {RESTOCK_MAX_UNITS}."]}},
        )
    with tenant_context(tenant_id):
        product = Product.objects.filter(tenant_id=tenant_id, pk=product_id).only("id", "kind").first()
        if product is None:
            raise ProductNotFound(f"Product {product_id} does not exist.")
        if product.kind != ProductKind.PRINT:
            raise ProductNotRestockable(
                f"Product {product_id} is {'a download' if product.kind == 'download' else 'the bulk product'}: "
                "only prints have stock."
            )
        with connection.cursor() as cursor:
            cursor.execute(
                _RESTOCK_SQL,
                {
                    "add": add_quantity,
                    "now": timezone.now(),
                    "tenant_id": tenant_id,
                    "product_id": product_id,
                    "ceiling": STOCK_MAX_UNITS - add_quantity,
                },
            )
            row = cursor.fetchone()
        if row is None:
            if not Stock.objects.filter(tenant_id=tenant_id, product_id=product_id).exists():
                raise ProductNotRestockable(f"Product {product_id} has no stock row.")
            raise StockLimitExceeded(
                f"A print holds at most {STOCK_MAX_UNITS} units in all; this restock would pass that.",
                extra={"errors": {"add_quantity": [f"At most {STOCK_MAX_UNITS} units in all."]}},
            )
        return StockRestock.objects.create(
            tenant_id=tenant_id,
            product_id=product_id,
            added_quantity=add_quantity,
            quantity_after=row[0],
            initial_quantity_after=row[1],
            actor_user=actor.user,
            actor_label=actor.label[:200],
            request_id=(get_request_id() or "")[:128],
        )
