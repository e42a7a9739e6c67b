"""Migration commerce 0018 (the unique reason index leaves out parts refunded at the provider)
run again after its CONCURRENTLY build was cut short: the invalid leftover is built again, never
swapped in, so Postgres keeps enforcing one refund per reason per payment (real Postgres, the
owner's connection)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader

from apps.commerce.models import Refund, Transaction
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.web.studio.conftest import StudioPeople

pytestmark = pytest.mark.usefixtures("empty_broker", "row_lock_strategy")


migration_test = pytest.mark.django_db(transaction=True, databases=["default", "owner"])
NAME = "commerce_refund_unique_reason"
BUILDING = "commerce_refund_unique_reason_new"


def the_migration() -> ModuleType:
    return importlib.import_module("apps.commerce.migrations.0018_refund_provider_partial")


def reason_key(owner: BaseDatabaseWrapper) -> tuple[bool, bool, str] | None:
    """(valid, ready, predicate) of the unique reason index, None if there is none."""
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid, i.indisready, pg_get_expr(i.indpred, i.indrelid)"
            "  FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)",
            [NAME],
        )
        row = cursor.fetchone()
    return (bool(row[0]), bool(row[1]), str(row[2])) if row else None


def latest() -> ModuleType:
    """The last migration that defines the unique reason index (0026: second charges left out)."""
    return importlib.import_module("apps.commerce.migrations.0026_refund_second_charge_unique")


@pytest.fixture
def refund_key_before_0018() -> Iterator[BaseDatabaseWrapper]:
    """The owner's connection (autocommit), with the unique reason index as 0017 left it; the
    index as the latest migration builds it again afterwards (later tests run on that schema)."""
    owner = connections["owner"]
    try:
        with owner.cursor() as cursor:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
            cursor.execute(the_migration().CREATE_OLD)
        assert reason_key(owner) == (True, True, "(NOT ((reason)::text = 'studio_partial'::text))")
        yield owner
    finally:
        with owner.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
            cursor.execute(latest()._reason_index_sql(BUILDING, latest().NEW_PREDICATE))
            cursor.execute(f"ALTER INDEX {BUILDING} RENAME TO {NAME}")
    assert reason_key(owner) == (
        True,
        True,
        "(NOT ((reason)::text = ANY ((ARRAY['studio_partial'::character varying, "
        "'provider_partial'::character varying, 'duplicate_charge'::character varying])::text[])))",
    )


def migrate_0018(owner: BaseDatabaseWrapper) -> None:
    """`migrate commerce 0018` from 0017: the migration's operations, as the executor applies them."""
    module = the_migration()
    migration = module.Migration("0018_refund_provider_partial", "commerce")
    state = MigrationLoader(owner).project_state(("commerce", "0017_checkout_line_refund_index"))
    with owner.schema_editor(atomic=migration.atomic) as editor:
        migration.apply(state, editor)


def second_studio_refund_refused(studio: StudioPeople, checkout_id: str) -> bool:
    """Whether Postgres refuses a second `studio` refund of one payment (nothing is kept)."""

    class Undo(Exception):
        pass

    refused = False
    try:
        with tenant_context(studio.org.pk), transaction.atomic():
            txn = Transaction.objects.get(checkout_id=checkout_id)
            for key in ("review-1", "review-2"):
                try:
                    with transaction.atomic():
                        Refund.objects.create(
                            tenant_id=studio.org.pk,
                            transaction=txn,
                            reason=Refund.Reason.STUDIO,
                            amount_minor=3400,
                            currency="EUR",
                            idempotency_key=key,
                        )
                except IntegrityError:
                    refused = True
            raise Undo
    except Undo:
        pass
    return refused


@migration_test
def test_migration_0018_run_again_after_its_index_build_was_cut_short_keeps_one_refund_per_reason(
    studio: StudioPeople, sale: str, refund_key_before_0018: BaseDatabaseWrapper
) -> None:
    owner = refund_key_before_0018
    # given: a first `migrate` whose CREATE INDEX CONCURRENTLY was cut short (a deploy's
    # statement_timeout while a webhook's transaction writes refunds): it leaves an invalid index
    blocker = connections.create_connection("owner")
    try:
        with blocker.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE commerce_refund IN ROW EXCLUSIVE MODE")
        with owner.cursor() as cursor:
            cursor.execute("SET statement_timeout = '1s'")
            with pytest.raises(OperationalError):
                cursor.execute(the_migration().CREATE_NEW)
            cursor.execute("RESET statement_timeout")
    finally:
        with blocker.cursor() as cursor:
            cursor.execute("ROLLBACK")
        blocker.close()
    with owner.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [BUILDING])
        assert cursor.fetchone() == (False,)
    # when: `migrate` runs again
    migrate_0018(owner)
    # then: the unique reason index is a valid one, and Postgres refuses a second whole refund of
    # one payment
    valid, ready, _ = reason_key(owner) or (False, False, "")
    refused = second_studio_refund_refused(studio, sale)
    assert (valid, ready, refused) == (True, True, True), (
        "0018 swapped its half-built, invalid index in for the valid one: Postgres no longer enforces one "
        "refund per reason (a second `studio` refund of one payment is accepted)"
    )
