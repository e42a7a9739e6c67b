"""Test database set-up: real PostgreSQL, migrated as the owner, exercised as the runtime role.

pytest-django's own set-up would create the test database through the `default` connection;
here the database is created through the admin URL, owned by the owner role and migrated
through the `owner` alias, while every test talks through `default` (the runtime role, which is
neither superuser nor owner nor BYPASSRLS) so row-level security is really in force.
Each xdist worker gets its own database (`test_darkroom_gw0`, ...).

After a transactional test the database is emptied once, by the superuser, with DELETE rather
than Django's flush (a TRUNCATE of every table through each alias): see `_empty_test_database`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections
from django.test import TransactionTestCase
from psycopg import sql

pytest_plugins = ["tests.fixtures"]


def _admin_execute(statement: sql.Composable) -> None:
    with psycopg.connect(settings.DATABASE_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment: None, django_db_blocker, django_db_modify_db_settings) -> Iterator[None]:
    default = settings.DATABASES["default"]
    test_name = default["TEST"].get("NAME") or f"test_{default['NAME']}"
    owner = settings.DATABASES["owner"]["USER"]
    with django_db_blocker.unblock():
        for alias in connections:
            connections[alias].close()
        _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(test_name)))
        _admin_execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(test_name), sql.Identifier(owner)))
        for alias in connections:
            connections[alias].settings_dict["NAME"] = test_name
        call_command("migrate", database="owner", verbosity=0, interactive=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", _empty_test_database)
        yield
    with django_db_blocker.unblock():
        for alias in connections:
            connections[alias].close()
        _close_emptier()
        _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(test_name)))


@pytest.fixture(autouse=True)
def _no_redis_failure_remembered() -> Iterator[None]:
    """Each test starts and ends with no Redis failure remembered by this process
    (`apps.core.redis_guard`): a test that made Redis unreachable must not make later ones skip it."""
    from apps.core.redis_guard import forget

    forget()
    yield
    forget()


def admin_url_for(database: str) -> str:
    return urlsplit(settings.DATABASE_ADMIN_URL)._replace(path=f"/{database}").geturl()


# The superuser's connection to this process's test database that empties it after each
# transactional test (opened at the first, closed with the database).
_emptier: psycopg.Connection[Any] | None = None
_django_fixture_teardown = TransactionTestCase._fixture_teardown


def _empty_test_database(self: TransactionTestCase) -> None:
    """After a transactional test, leave what Django's flush leaves, in one cheap pass.

    Django flushes each alias of the test (`default` and `owner`, two roles on one database here,
    so twice) with a TRUNCATE of every table: each creates new files for some 60 tables and 300
    indexes and took about 0.5 s, twice per test, most of the suite's time. Instead the
    superuser DELETEs every row of the same tables (those of the installed models, as flush) in
    one transaction, with `session_replication_role = replica` so that, as under TRUNCATE, no
    row trigger runs (the append-only guards) and foreign keys are not checked row by row; a
    superuser is not subject to row-level security, so no tenant's rows stay behind. Then, as
    flush, post_migrate runs once (content types, permissions, runtime grants, partitions).
    Sequences are left as they are, as flush leaves them (`reset_sequences=False`).
    """
    if self.available_apps is not None or self.serialized_rollback:
        _django_fixture_teardown(self)  # flush's subset and serialized variants: not used here
        return
    global _emptier
    owner = connections["owner"]
    tables = owner.introspection.django_table_names(only_existing=True, include_views=False)
    if _emptier is None or _emptier.closed or _emptier.broken:
        _emptier = psycopg.connect(admin_url_for(owner.settings_dict["NAME"]), autocommit=True)
    with _emptier.transaction():
        _emptier.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            _emptier.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    emit_post_migrate_signal(verbosity=0, interactive=False, db="owner")


def _close_emptier() -> None:
    global _emptier
    if _emptier is not None:
        _emptier.close()
        _emptier = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests are emptied through the owner alias (its table list, post_migrate),
    so it must be usable in them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or not marker.kwargs.get("transaction"):
            continue
        databases = marker.kwargs.get("databases")
        if databases == "__all__" or (databases and "owner" in databases):
            continue
        kwargs = {**marker.kwargs, "databases": sorted({*(databases or ["default"]), "owner"})}
        item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)
