"""Signing in by e-mail address (and matching an invitation to an account) looks the account up by
its address in any case (`email__iexact`, which PostgreSQL runs as UPPER(email) = UPPER(...)):
that lookup must use an index, not scan every account on each sign-in attempt."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from apps.tenancy.models import User

pytestmark = pytest.mark.django_db


def test_the_address_lookup_in_any_case_can_use_an_index() -> None:
    # given: a few accounts
    for n in range(5):
        User.objects.create_user(username=f"user{n}", email=f"User{n}@Example.com", password="x")
    lookup = User.objects.filter(email__iexact="user3@example.com").values_list("username")
    query, params = lookup.query.sql_with_params()
    # when: PostgreSQL plans the lookup with sequential scans priced out (a tiny table would
    # otherwise be scanned whatever indexes it has)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {query}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then: it reads an index on the upper-cased address
    assert "tenancy_user_email_upper" in plan, plan
