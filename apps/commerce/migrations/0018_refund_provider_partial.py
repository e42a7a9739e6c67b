# Parts of a payment refunded in the provider's own dashboard are recorded (`provider_partial`
# refunds, several per payment), so the unique reason key leaves them out as it leaves out the
# studio's item refunds. Refunds are written by webhooks at any time, so no step blocks them for
# long: the new partial unique index is built CONCURRENTLY under a temporary name, then in one
# short transaction (lock_timeout 5 s) the old index is dropped and the new one takes its name.
#
# Re-runnable: a build that was cut short leaves an INVALID index (not enforced) under the
# temporary name; it is dropped and built again, never swapped in. A run done already changes
# nothing. Reversible the same way (fails if a payment already has two parts refunded at the
# provider).

from django.db import migrations, models, transaction

NAME = "commerce_refund_unique_reason"
BUILDING = "commerce_refund_unique_reason_new"
LOCK_TIMEOUT = "5s"

REASONS = [
    ("late_payment", "Paid after the reservation expired"),
    ("not_fulfillable", "Nothing left to deliver"),
    ("amount_mismatch", "Charged amount differs from the checkout"),
    ("studio", "Refunded by the studio"),
    ("photo_withdrawn", "A photo in the order was withdrawn"),
    ("studio_partial", "Items refunded by the studio"),
    ("provider_partial", "Part refunded at the payment provider"),
]

NEW_PREDICATE = "NOT (reason IN ('studio_partial', 'provider_partial'))"
OLD_PREDICATE = "NOT (reason = 'studio_partial')"


def create_sql(name: str, predicate: str) -> str:
    return (
        f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON commerce_refund (tenant_id, transaction_id, reason) "
        f"WHERE {predicate}"
    )


CREATE_NEW = create_sql(BUILDING, NEW_PREDICATE)
CREATE_OLD = create_sql(NAME, OLD_PREDICATE)


def _index(connection, name: str) -> tuple[bool, str] | None:
    """(valid, predicate) of the index `name`, None if there is none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid, pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i"
            " WHERE i.indexrelid = to_regclass(%s)",
            [name],
        )
        row = cursor.fetchone()
    return (bool(row[0]), str(row[1] or "")) if row else None


def _swap_in(connection, predicate: str, *, covers_provider_partial: bool) -> None:
    """Make NAME the unique reason index with `predicate` (`covers_provider_partial`: whether its
    predicate leaves provider_partial out, which tells the two definitions apart). Outside any
    transaction."""
    current = _index(connection, NAME)
    if current is not None and current[0] and ("provider_partial" in current[1]) == covers_provider_partial:
        return  # done already
    building = _index(connection, BUILDING)
    built = building is not None and building[0] and ("provider_partial" in building[1]) == covers_provider_partial
    if not built:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")  # a build cut short: invalid
            cursor.execute(create_sql(BUILDING, predicate))
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"DROP INDEX IF EXISTS {NAME}")
        cursor.execute(f"ALTER INDEX {BUILDING} RENAME TO {NAME}")


def forwards(apps, schema_editor):
    _swap_in(schema_editor.connection, NEW_PREDICATE, covers_provider_partial=True)


def backwards(apps, schema_editor):
    _swap_in(schema_editor.connection, OLD_PREDICATE, covers_provider_partial=False)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY; the swap opens its own transaction

    dependencies = [
        ("commerce", "0017_checkout_line_refund_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.RemoveConstraint(model_name="refund", name="commerce_refund_unique_reason"),
                migrations.AddConstraint(
                    model_name="refund",
                    constraint=models.UniqueConstraint(
                        condition=~models.Q(reason__in=["studio_partial", "provider_partial"]),
                        fields=("tenant", "transaction", "reason"),
                        name="commerce_refund_unique_reason",
                    ),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="refund", name="reason", field=models.CharField(choices=REASONS, max_length=20)
        ),
    ]
