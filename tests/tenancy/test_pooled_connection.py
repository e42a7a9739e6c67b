"""A connection reused across requests never carries the previous request's tenant."""

import pytest
from django.db import connection

from apps.tenancy.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_second_request_on_same_connection_sees_nothing_of_the_first(tenant_a, client, settings):
    # given: persistent connections (CONN_MAX_AGE > 0), as in production pooling
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0
    pid_before = _backend_pid()
    # when: a request acts for tenant A ...
    first = tenant_a.client().get("/api/v1/tenancy/whoami")
    assert first.status_code == 200 and first.json()["tenant_id"] == tenant_a.org.pk
    # ... and the next request on the same connection is anonymous
    second = client.get("/api/v1/tenancy/whoami")
    assert second.status_code in (401, 403)
    # then: it was the same server connection, and it shows no tenant state or rows
    assert _backend_pid() == pid_before
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('app.tenant_id', true), current_setting('app.system_context', true)")
        assert cursor.fetchone() in {("", ""), (None, None)}
    assert Membership.objects.count() == 0
