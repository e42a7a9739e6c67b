"""Migration commerce 0026 (second charges: the unique reason index leaves out `duplicate_charge`
refunds, and each charge is given back once) run again after its CONCURRENTLY builds were cut
short, and reversed and re-applied: the invalid leftovers are built again, never swapped in, and
Postgres ends enforcing both keys (real Postgres, the owner's connection)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader

from tests.commerce.fixtures import empty_broker  # noqa: F401 - a fixture, by name

pytestmark = [
    pytest.mark.usefixtures("empty_broker"),
    pytest.mark.django_db(transaction=True, databases=["default", "owner"]),
]


def the_migration() -> ModuleType:
    return importlib.import_module("apps.commerce.migrations.0026_refund_second_charge_unique")


def index(owner: BaseDatabaseWrapper, name: str) -> tuple[bool, str] | None:
    """(valid, predicate) of the index `name`, None if there is none."""
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid, pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i"
            " WHERE i.indexrelid = to_regclass(%s)",
            [name],
        )
        row = cursor.fetchone()
    return (bool(row[0]), str(row[1])) if row else None


def run(owner: BaseDatabaseWrapper, *, backwards: bool = False) -> None:
    """0026's operations, as the executor applies (or unapplies) them."""
    module = the_migration()
    migration = module.Migration("0026_refund_second_charge_unique", "commerce")
    state = MigrationLoader(owner).project_state(("commerce", "0025_refund_second_charge"))
    with owner.schema_editor(atomic=migration.atomic) as editor:
        if backwards:
            after = migration.mutate_state(state, preserve=True)
            migration.unapply(after, editor)
        else:
            migration.apply(state, editor)


def cut_short(owner: BaseDatabaseWrapper, sql: str) -> None:
    """`sql` (a CREATE INDEX CONCURRENTLY) stopped by a deploy's statement_timeout while a
    webhook's transaction writes refunds: it leaves an invalid index."""
    blocker = connections.create_connection("owner")
    try:
        with blocker.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE commerce_refund IN ROW EXCLUSIVE MODE")
        with owner.cursor() as cursor:
            cursor.execute("SET statement_timeout = '1s'")
            with pytest.raises(OperationalError):
                cursor.execute(sql)
            cursor.execute("RESET statement_timeout")
    finally:
        with blocker.cursor() as cursor:
            cursor.execute("ROLLBACK")
        blocker.close()


@pytest.fixture
def owner() -> Iterator[BaseDatabaseWrapper]:
    """The owner's connection (autocommit); 0026 applied again afterwards (later tests run on it)."""
    owner = connections["owner"]
    try:
        yield owner
    finally:
        with owner.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
        run(owner)


def test_0026_cut_short_then_run_again_and_reversed_ends_with_both_keys(owner: BaseDatabaseWrapper) -> None:
    module = the_migration()
    # given: 0025's schema (0026 reversed) and a first run of 0026 whose builds were both cut short
    run(owner, backwards=True)
    assert index(owner, module.SECOND_CHARGE) is None
    assert "duplicate_charge" not in (index(owner, module.REASON) or (False, ""))[1]
    cut_short(owner, module.SECOND_CHARGE_SQL)
    cut_short(owner, module._reason_index_sql(module.BUILDING, module.NEW_PREDICATE))
    assert index(owner, module.SECOND_CHARGE) == (False, "((reason)::text = 'duplicate_charge'::text)")
    # when: `migrate` runs again, and once more
    run(owner)
    run(owner)
    # then: both keys are valid, the reason index leaves second charges out, no leftover remains
    reason = index(owner, module.REASON)
    assert reason is not None and reason[0] and "duplicate_charge" in reason[1], reason
    assert index(owner, module.SECOND_CHARGE) == (True, "((reason)::text = 'duplicate_charge'::text)")
    assert index(owner, module.BUILDING) is None
