"""Test database set-up: real PostgreSQL, migrated as the owner, exercised as the runtime role.

pytest-django's own set-up would create the test database through the `default` connection;
here the database is created through the admin URL, owned by the owner role and migrated
through the `owner` alias, while every test talks through `default` (the runtime role, which is
neither superuser nor owner nor BYPASSRLS) so row-level security is really in force.
Each xdist worker gets its own database (`test_darkroom_gw0`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections
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
    yield
    with django_db_blocker.unblock():
        for alias in connections:
            connections[alias].close()
        _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(test_name)))


def admin_url_for(database: str) -> str:
    return urlsplit(settings.DATABASE_ADMIN_URL)._replace(path=f"/{database}").geturl()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests flush through the owner alias, so it must be usable in them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or not marker.kwargs.get("transaction"):
            continue
        databases = marker.kwargs.get("databases")
        if databases == "__all__" or (databases and "owner" in databases):
            continue
        kwargs = {**marker.kwargs, "databases": sorted({*(databases or ["default"]), "owner"})}
        item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)
