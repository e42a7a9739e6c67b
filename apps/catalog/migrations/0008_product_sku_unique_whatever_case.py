# A studio's SKUs are unique whatever their case: "PRINT-A4" and "print-a4" are one SKU to a
# print lab or a bookkeeper. `catalog_product_unique_tenant_sku` becomes a unique index on
# (tenant_id, lower(sku)) instead of UNIQUE (tenant_id, sku), keeping its name (`product_create`
# and code of the release before this one both map a violation of that name to a 409).
#
# First a check, in the system context (product rows are under forced RLS, every studio's): if a
# studio has SKUs that differ only in case, the migration stops before changing anything and names
# them (studio, product ids, SKUs); which one to rename is the studio's call. Then the new index is
# built CONCURRENTLY under a temporary name (products keep being read and written meanwhile), and
# in one short transaction the old constraint is dropped and the index takes its name. Dropping
# the constraint takes an ACCESS EXCLUSIVE lock on the products table for an instant; behind a
# long transaction it gives up after `lock_timeout` instead of queueing every checkout behind it.
#
# A run that stopped anywhere can be run again: a failed build's invalid index is dropped (writes
# keep updating it, and one that failed late even enforces it), a finished one is kept. SKUs
# written in another case between the check and the end of the build make the build fail; the
# migration then drops it and stops with the same check's message. Reversible: the reverse builds
# UNIQUE (tenant_id, sku) the same way.

from django.db import IntegrityError, migrations, models, transaction
from django.db.models.functions import Lower

NAME = "catalog_product_unique_tenant_sku"
# The new index's name while the old constraint still holds NAME.
BUILDING = "catalog_product_unique_tenant_sku_next"
LOCK_TIMEOUT = "5s"
# At most this many groups are listed in the message (with how many more there are).
LISTED = 50

CLASHES_SQL = """
SELECT p.tenant_id, o.slug, array_agg(p.id ORDER BY p.id), array_agg(p.sku ORDER BY p.id)
  FROM catalog_product AS p
  JOIN tenancy_organization AS o ON o.id = p.tenant_id
 GROUP BY p.tenant_id, o.slug, lower(p.sku)
HAVING count(*) > 1
 ORDER BY p.tenant_id, min(p.id)
"""

WHATEVER_CASE_SQL = f'CREATE UNIQUE INDEX CONCURRENTLY "{BUILDING}" ON "catalog_product" ("tenant_id", (LOWER("sku")))'
EXACT_CASE_SQL = f'CREATE UNIQUE INDEX CONCURRENTLY "{BUILDING}" ON "catalog_product" ("tenant_id", "sku")'


class SkuCaseClash(Exception):
    """Some studio has SKUs that differ only in case; the message names them and what to do."""


def sku_case_clashes_on(connection) -> list[tuple[int, str, list[int], list[str]]]:
    """Every group of a studio's products whose SKUs differ only in case, as (studio id, studio
    slug, product ids, their SKUs as stored), products in id order. Reads every studio's products
    in the system context; in its own transaction (a savepoint inside the caller's)."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(CLASHES_SQL)
        clashes = [(tenant_id, slug, list(ids), list(skus)) for tenant_id, slug, ids, skus in cursor.fetchall()]
        cursor.execute("SELECT set_config('app.system_context', '', true)")
    return clashes


def sku_case_clashes_refuse(connection) -> None:
    """Raise SkuCaseClash naming every group of SKUs that differ only in case, if there is any."""
    clashes = sku_case_clashes_on(connection)
    if not clashes:
        return
    lines = [
        f"  studio {tenant_id} ({slug}): "
        + ", ".join(f"product {pk} {sku!r}" for pk, sku in zip(ids, skus, strict=True))
        for tenant_id, slug, ids, skus in clashes[:LISTED]
    ]
    if len(clashes) > LISTED:
        lines.append(f"  ... and {len(clashes) - LISTED} more groups")
    raise SkuCaseClash(
        f"SKUs must be unique in a studio whatever their case, and {len(clashes)} group(s) of SKUs differ "
        "only in case; nothing was changed:\n"
        + "\n".join(lines)
        + "\nRename all but one SKU of each group (agree the new SKU with the studio: its print lab and "
        "bookkeeping know products by SKU), then run `manage.py migrate` again. As the database owner:\n"
        "  BEGIN; SELECT set_config('app.system_context', 'on', true);\n"
        "  UPDATE catalog_product SET sku = '<new SKU>' WHERE id = <product id>; COMMIT;"
    )


def _name_is(connection) -> str:
    """What NAME is on the products table now: "constraint" (UNIQUE (tenant_id, sku)), "index"
    (the unique index on lower(sku), this migration done) or "" (neither)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = 'catalog_product'::regclass),"
            " to_regclass(%s) IS NOT NULL",
            [NAME, NAME],
        )
        is_constraint, exists = cursor.fetchone()
    return "constraint" if is_constraint else "index" if exists else ""


def _drop_building(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{BUILDING}"')


def _build(connection, create_sql: str, *, on_lower: bool) -> None:
    """Build the BUILDING index CONCURRENTLY (outside any transaction), unless a run that stopped
    before its swap built it already (valid, and on lower(sku) or not as `on_lower` says). A
    failed build leaves an invalid index that writes keep updating: it is dropped, here before
    building and after a build that found a clash, and then the check names the clash
    (SkuCaseClash)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid AND (indexprs IS NOT NULL) = %s FROM pg_index WHERE indexrelid = to_regclass(%s)",
            [on_lower, BUILDING],
        )
        row = cursor.fetchone()
    if row is not None and row[0]:
        return
    _drop_building(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute(create_sql)
    except IntegrityError:
        # SKUs written in another case since the check (in the new index's own words, a unique
        # violation): say which, as the check does.
        _drop_building(connection)
        sku_case_clashes_refuse(connection)
        raise


def _swap(connection, statements: list[str]) -> None:
    """Run `statements` in one transaction under LOCK_TIMEOUT: the products table is locked
    ACCESS EXCLUSIVE until it commits, which must not wait behind a long transaction."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for statement in statements:
            cursor.execute(statement)


def skus_unique_whatever_case_on(connection) -> None:
    """Make NAME the unique index on (tenant_id, lower(sku)). Raises SkuCaseClash (nothing
    changed) if a studio has SKUs that differ only in case. Outside any transaction."""
    if _name_is(connection) == "index":
        return
    sku_case_clashes_refuse(connection)
    _build(connection, WHATEVER_CASE_SQL, on_lower=True)
    _swap(
        connection,
        [
            f'ALTER TABLE "catalog_product" DROP CONSTRAINT IF EXISTS "{NAME}"',
            f'ALTER INDEX "{BUILDING}" RENAME TO "{NAME}"',
        ],
    )


def skus_unique_exact_case_on(connection) -> None:
    """The reverse: make NAME the constraint UNIQUE (tenant_id, sku) again (which SKUs unique
    whatever their case always satisfy). Outside any transaction."""
    if _name_is(connection) == "constraint":
        return
    _build(connection, EXACT_CASE_SQL, on_lower=False)
    _swap(
        connection,
        [
            f'DROP INDEX IF EXISTS "{NAME}"',
            f'ALTER TABLE "catalog_product" ADD CONSTRAINT "{NAME}" UNIQUE USING INDEX "{BUILDING}"',
        ],
    )


def forwards(apps, schema_editor):
    skus_unique_whatever_case_on(schema_editor.connection)


def backwards(apps, schema_editor):
    skus_unique_exact_case_on(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY; the check and the swap open their own transactions

    dependencies = [
        ("catalog", "0007_event_slugs_lower_case"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.RemoveConstraint(model_name="product", name=NAME),
                migrations.AddConstraint(
                    model_name="product",
                    constraint=models.UniqueConstraint("tenant", Lower("sku"), name=NAME),
                ),
            ],
        ),
    ]
