"""API key resolution is cached, and revocation takes effect at once."""

import pytest
from django.core.cache import cache

from apps.tenancy.selectors import api_key_cache_key, api_key_resolve
from apps.tenancy.services import api_key_revoke, hash_api_key

pytestmark = pytest.mark.django_db


def test_resolution_is_cached_by_hash_and_revocation_drops_it(
    tenant_a, client, django_assert_num_queries, django_capture_on_commit_callbacks
):
    # given: a key resolved once (a database lookup), then again (from the cache, no query)
    first = api_key_resolve(raw_key=tenant_a.api_key)
    assert first is not None and first.tenant_id == tenant_a.org.pk
    assert cache.get(api_key_cache_key(hash_api_key(tenant_a.api_key))) is not None
    with django_assert_num_queries(0):
        assert api_key_resolve(raw_key=tenant_a.api_key) == first
    # when: it is revoked (and the revocation commits: the cache entry goes on commit)
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(tenant=tenant_a.org, api_key_id=first.api_key_id)
    # then: it stops authenticating immediately
    assert api_key_resolve(raw_key=tenant_a.api_key) is None
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    assert response.status_code == 401


def test_unknown_keys_are_not_cached():
    assert api_key_resolve(raw_key="drk_nope_nope") is None
    assert cache.get(api_key_cache_key(hash_api_key("drk_nope_nope"))) is None
