# A payment may have several second charges (each given back once), so the unique reason index
# leaves `duplicate_charge` refunds out, and a second charge's refund is unique per (charge,
# tenant, payment). Refunds are written by webhooks at any time, so, as in 0018, each index is
# built CONCURRENTLY (the new reason index under a temporary name), then in one short transaction
# (lock_timeout 5 s) the old reason index is dropped and the new one takes its name.
#
# Re-runnable: a build cut short leaves an INVALID index (not enforced), which is dropped and
# built again, never swapped in; a run done already changes nothing. Reversible the same way
# (the reverse fails once a payment has two second charges given back).

from django.db import migrations, models, transaction

REASON = "commerce_refund_unique_reason"
BUILDING = "commerce_refund_unique_reason_new"
SECOND_CHARGE = "commerce_refund_unique_second_charge"
LOCK_TIMEOUT = "5s"

NEW_PREDICATE = "NOT (reason IN ('studio_partial', 'provider_partial', 'duplicate_charge'))"
OLD_PREDICATE = "NOT (reason IN ('studio_partial', 'provider_partial'))"


def _reason_index_sql(name: str, predicate: str) -> str:
    return (
        f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON commerce_refund (tenant_id, transaction_id, reason) "
        f"WHERE {predicate}"
    )


SECOND_CHARGE_SQL = (
    f"CREATE UNIQUE INDEX CONCURRENTLY {SECOND_CHARGE} ON commerce_refund (payment_id, tenant_id, transaction_id) "
    "WHERE reason = 'duplicate_charge'"
)


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


def _built(connection, name: str, sql: str, *, done: bool) -> None:
    """Build the index `name` with `sql` unless a valid one stands (`done`); a build cut short
    (invalid) is dropped first. Outside any transaction."""
    if done:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        cursor.execute(sql)


def _swap_reason_index(connection, predicate: str, *, leaves_out_second_charges: bool) -> None:
    """Make REASON the unique reason index with `predicate` (`leaves_out_second_charges` tells the
    two definitions apart). Outside any transaction."""
    current = _index(connection, REASON)
    if current is not None and current[0] and ("duplicate_charge" in current[1]) == leaves_out_second_charges:
        return  # done already
    building = _index(connection, BUILDING)
    ready = building is not None and building[0] and ("duplicate_charge" in building[1]) == leaves_out_second_charges
    _built(connection, BUILDING, _reason_index_sql(BUILDING, predicate), done=ready)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"DROP INDEX IF EXISTS {REASON}")
        cursor.execute(f"ALTER INDEX {BUILDING} RENAME TO {REASON}")


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    second = _index(connection, SECOND_CHARGE)
    _built(connection, SECOND_CHARGE, SECOND_CHARGE_SQL, done=second is not None and second[0])
    _swap_reason_index(connection, NEW_PREDICATE, leaves_out_second_charges=True)


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    _swap_reason_index(connection, OLD_PREDICATE, leaves_out_second_charges=False)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SECOND_CHARGE}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY; the swap opens its own transaction

    dependencies = [
        ("commerce", "0025_refund_second_charge"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.RemoveConstraint(model_name="refund", name="commerce_refund_unique_reason"),
                migrations.AddConstraint(
                    model_name="refund",
                    constraint=models.UniqueConstraint(
                        condition=~models.Q(reason__in=["studio_partial", "provider_partial", "duplicate_charge"]),
                        fields=("tenant", "transaction", "reason"),
                        name="commerce_refund_unique_reason",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="refund",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(reason="duplicate_charge"),
                        fields=("payment_id", "tenant", "transaction"),
                        name="commerce_refund_unique_second_charge",
                    ),
                ),
            ],
        ),
    ]
