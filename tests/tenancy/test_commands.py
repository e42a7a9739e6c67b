"""tenant_create and seed_demo."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.tenancy.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)


def test_tenant_create_prints_json_with_a_working_key(client):
    out = StringIO()
    call_command("tenant_create", "--slug", "acme", "--name", "Acme Photo", stdout=out)
    payload = json.loads(out.getvalue())
    assert set(payload) == {"tenant_id", "slug", "api_key"} and payload["slug"] == "acme"
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=f"Bearer {payload['api_key']}")
    assert response.json()["tenant_id"] == payload["tenant_id"]


def test_tenant_create_refuses_duplicate_slug_clearly():
    call_command("tenant_create", "--slug", "dup", "--name", "One", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("tenant_create", "--slug", "dup", "--name", "Two", stdout=StringIO())
    assert Organization.objects.filter(slug="dup").count() == 1


def test_seed_demo_is_repeatable_and_logins_work(client):
    for _ in range(2):
        out = StringIO()
        call_command("seed_demo", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert {login["username"] for login in payload["logins"]} == {"admin", "owner", "photographer", "shopper"}
    assert client.login(username="owner", password="darkroom-demo")
    whoami = client.get("/api/v1/tenancy/whoami")
    assert whoami.status_code == 200 and whoami.json()["role"] == "owner"
