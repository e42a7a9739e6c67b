"""Every API error is an RFC 7807 problem body, and bad input writes nothing."""

import uuid

import pytest

from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey
from tests.factories.catalog import EventFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenancy/api-keys"


def _owner_client(tenant, client):
    client.force_login(tenant.owner)
    return client


def _key() -> dict[str, str]:
    """Every mutating API request carries an Idempotency-Key (see tests/idempotency)."""
    return {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())}


def _key_count(tenant) -> int:
    with tenant_context(tenant.org.pk):
        return ApiKey.objects.count()


def _assert_problem(response, status):
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


def test_malformed_json_is_400_and_writes_nothing(tenant_a, client):
    before = _key_count(tenant_a)
    response = _owner_client(tenant_a, client).post(URL, data="{not json", content_type="application/json", **_key())
    body = _assert_problem(response, 400)
    assert body["type"] == "/problems/malformed-request"
    assert _key_count(tenant_a) == before


def test_unknown_field_is_400_with_field_errors(tenant_a, client):
    before = _key_count(tenant_a)
    response = _owner_client(tenant_a, client).post(
        URL, data={"name": "ci", "admin": True}, content_type="application/json", **_key()
    )
    body = _assert_problem(response, 400)
    assert body["errors"] == {"admin": ["Unknown field."]}
    assert _key_count(tenant_a) == before


def test_missing_field_is_400_naming_it(tenant_a, client):
    response = _owner_client(tenant_a, client).post(URL, data={}, content_type="application/json", **_key())
    body = _assert_problem(response, 400)
    assert "name" in body["errors"]


def test_oversize_body_is_413_and_writes_nothing(tenant_a, client, settings):
    before = _key_count(tenant_a)
    big = '{"name": "' + "x" * (settings.API_MAX_BODY_BYTES + 10) + '"}'
    response = _owner_client(tenant_a, client).post(URL, data=big, content_type="application/json", **_key())
    _assert_problem(response, 413)
    assert _key_count(tenant_a) == before


def test_unauthenticated_is_problem(client):
    response = client.get("/api/v1/tenancy/whoami")
    body = _assert_problem(response, response.status_code)
    assert response.status_code in (401, 403)
    assert body["type"] in ("/problems/not-authenticated", "/problems/permission-denied")


def test_bad_api_key_is_401(client):
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION="Bearer drk_nope_nope")
    _assert_problem(response, 401)


def test_wrong_role_is_403(tenant_a, client):
    # an API key (integrator) may not issue further API keys
    response = tenant_a.client().post(URL, {"name": "x"}, format="json", **_key())
    _assert_problem(response, 403)


def test_owner_issues_key_shown_once_and_it_works(tenant_a, client):
    response = _owner_client(tenant_a, client).post(URL, data={"name": "ci"}, content_type="application/json", **_key())
    assert response.status_code == 201
    raw = response.json()["api_key"]
    with tenant_context(tenant_a.org.pk):
        stored = ApiKey.objects.get(pk=response.json()["id"])
    assert raw not in (stored.key_hash, stored.prefix)
    whoami = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert whoami.json()["tenant_id"] == tenant_a.org.pk


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_path_is_a_404_problem_with_a_trailing_slash_hint(client, settings, debug):
    # given: Django's own 404 page would be HTML (the technical page under DEBUG)
    settings.DEBUG = debug
    # when: a client asks for a path no API view serves, and a known one with a trailing slash
    missing = client.get("/api/v1/no-such-thing")
    slashed = client.post("/api/v1/checkouts/", data="{}", content_type="application/json")
    # then: both are problems; the second names the path that exists
    assert _assert_problem(missing, 404)["detail"] == "No endpoint at /api/v1/no-such-thing."
    assert "Did you mean /api/v1/checkouts (no trailing slash)?" in _assert_problem(slashed, 404)["detail"]


def test_a_views_own_404_problem_and_pages_outside_the_api_pass_unchanged(tenant_a, client):
    # given: an owner asking for a checkout that does not exist, and a page path outside the API
    _owner_client(tenant_a, client)
    unknown_checkout = client.get(f"/api/v1/checkouts/{uuid.uuid4()}")
    page = client.get("/no-such-page")
    # then: the view's problem keeps its own detail; the page 404 stays Django's HTML
    assert _assert_problem(unknown_checkout, 404)["detail"] != f"No endpoint at {unknown_checkout.wsgi_request.path}."
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("name", 7, "Expected a string."), ("name", True, "Expected a string."), ("name", ["x"], "Expected a string.")],
)
def test_a_json_value_of_the_wrong_type_is_400_and_writes_nothing(tenant_a, client, field, value, message):
    # given: the studio's key count; when: the owner sends a value of another JSON type
    before = _key_count(tenant_a)
    response = _owner_client(tenant_a, client).post(URL, data={field: value}, content_type="application/json", **_key())
    # then: a 400 naming the field, and no key was issued
    body = _assert_problem(response, 400)
    assert body["errors"] == {field: [message]}
    assert _key_count(tenant_a) == before


def test_json_numbers_are_not_taken_from_strings(tenant_a):
    client = tenant_a.client()
    response = client.post(
        "/api/v1/ledger/debits",
        data={"account_id": "1", "amount_minor": 1.0, "currency": "EUR"},
        format="json",
        **_key(),
    )
    body = _assert_problem(response, 400)
    assert body["errors"] == {"account_id": ["Expected an integer."], "amount_minor": ["Expected an integer."]}


def test_an_id_beyond_bigint_is_400_not_a_database_error(tenant_a):
    """Found by tests/core/test_openapi.py: the product id reached PostgreSQL as a 500."""
    response = tenant_a.client().post(
        "/api/v1/checkouts",
        data={"email": "a@example.test", "provider": "sandbox", "lines": [{"product": 2**63}]},
        format="json",
        **_key(),
    )
    body = _assert_problem(response, 400)
    assert list(body["errors"]) == ["lines.0.product"]


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "limit=201", "offset=-1", "offset=x", "limit=5&limit=6", "limit=1_0", "offset=+5"],
)
def test_a_bad_pagination_parameter_is_400_naming_it(tenant_a, query):
    # DRF's paginator would quietly serve its default page for each of these
    response = tenant_a.client().get(f"/api/v1/events?{query}")
    body = _assert_problem(response, 400)
    assert list(body["errors"]) == [query.split("=")[0]]


def test_pagination_gives_the_page_asked_for_up_to_200(tenant_a):
    # given: 203 events
    EventFactory.create_batch(203, tenant=tenant_a.org)
    # when: the client asks for the largest page, then for what is left after 200
    first = tenant_a.client().get("/api/v1/events?limit=200")
    rest = tenant_a.client().get("/api/v1/events?limit=200&offset=200")
    default = tenant_a.client().get("/api/v1/events")
    # then: 200 rows, then 3, and the default page is 50
    assert (first.status_code, len(first.json()["results"]), first.json()["count"]) == (200, 200, 203)
    assert len(rest.json()["results"]) == 3
    assert len(default.json()["results"]) == 50


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "a\\ud800"}',  # a lone surrogate in a value
        b'{"name": "ok", "\\udfff": 1}',  # ... in a key
    ],
)
def test_a_string_that_is_not_unicode_text_is_400_and_writes_nothing(tenant_a, client, body):
    """Found by hand after the webhook fuzzer: PostgreSQL cannot store it, which was a 500."""
    before = _key_count(tenant_a)
    response = _owner_client(tenant_a, client).post(URL, data=body, content_type="application/json", **_key())
    assert _assert_problem(response, 400)["type"] == "/problems/malformed-request"
    assert _key_count(tenant_a) == before


def test_a_nul_character_is_a_field_error(tenant_a, client):
    response = _owner_client(tenant_a, client).post(
        URL, data=b'{"name": "a\\u0000b"}', content_type="application/json", **_key()
    )
    assert list(_assert_problem(response, 400)["errors"]) == ["name"]


@pytest.mark.parametrize("name", ["ci\u202egnp.exe", "tab\there", "   "])
def test_an_api_key_name_breaking_the_rule_of_titles_is_400_and_writes_nothing(tenant_a, client, name):
    # given: a name with a text-direction override, a control character, or nothing but spaces
    before = _key_count(tenant_a)
    # when: an owner asks the API for a key of that name
    response = _owner_client(tenant_a, client).post(URL, data={"name": name}, content_type="application/json", **_key())
    # then: a problem naming the field, and no key (the keys list would show another name)
    body = _assert_problem(response, 400)
    assert list(body["errors"]) == ["name"]
    assert _key_count(tenant_a) == before
