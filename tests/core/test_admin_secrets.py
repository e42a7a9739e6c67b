"""The Django admin shows no secret: an API key's hash identifies the key to anyone holding the
secret's digest (the cache and the authentication look it up by it), and is no operator's need."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.tenancy.services import api_key_issue
from tests.core.test_admin_money_guards import admin_client  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.django_db


def test_an_api_keys_page_shows_its_prefix_not_its_hash(tenant_a: Any, admin_client: Client) -> None:  # noqa: F811
    # given: an issued key
    key = api_key_issue(tenant=tenant_a.org, name="integration").api_key
    # when: the operator opens it
    page = admin_client.get(f"/admin/tenancy/apikey/{key.pk}/change/").content.decode()
    # then: its name and prefix, never its hash
    assert key.prefix in page and "integration" in page
    assert key.key_hash not in page
