"""API key resolution is cached, and revocation takes effect at once."""

import pytest
from django.core.cache import cache

from apps.tenancy import selectors
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


class _RevokeBeforeCaching:
    """The cache as `api_key_resolve` sees it, with a revocation committing at the exact moment the
    resolver, having read the key as active from the database, is about to cache it."""

    def __init__(self, real: object, revoke: object) -> None:
        self._real, self._revoke, self.raced = real, revoke, False

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._real, name)
        if name not in ("set", "add", "set_many") or self.raced:
            return attribute

        def write(*args: object, **kwargs: object) -> object:
            self.raced = True
            self._revoke()  # type: ignore[operator]
            return attribute(*args, **kwargs)

        return write


@pytest.mark.django_db(transaction=True)
def test_a_resolution_racing_the_revocation_never_caches_the_key_as_active(tenant_a, monkeypatch):
    # given: a request resolving the key has read it as active, and the revocation commits (dropping
    # the cached entry) before that request caches what it read
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None
    cache.delete(api_key_cache_key(hash_api_key(tenant_a.api_key)))
    racing = _RevokeBeforeCaching(
        selectors.cache, lambda: api_key_revoke(tenant=tenant_a.org, api_key_id=resolved.api_key_id)
    )
    monkeypatch.setattr(selectors, "cache", racing)
    api_key_resolve(raw_key=tenant_a.api_key)
    assert racing.raced
    monkeypatch.undo()
    # when: the next request presents the revoked key
    response = tenant_a.client().get("/api/v1/tenancy/whoami")
    # then: it is refused (not served from a stale cache entry for the next 30 seconds)
    assert api_key_resolve(raw_key=tenant_a.api_key) is None
    assert response.status_code == 401


@pytest.mark.parametrize("header", ["\xa0", " ", "\x0b", "\x1c"])
def test_an_authorization_header_of_only_whitespace_is_no_credential_not_a_500(client, header):
    # given: an Authorization header whose value Python's split() reads as nothing at all
    # (a NBSP or a control separator, as a client can send it in latin-1)
    # when: it reaches the API
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=header)
    # then: the request carries no credential: a 401 problem, like any unauthenticated call
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
