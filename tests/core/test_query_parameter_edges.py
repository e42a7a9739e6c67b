"""Edges of the query-parameter check (`TenantApi.query_parameters`): a parameter given twice, a
method the operation does not serve, OPTIONS, and a query string with more parameters than Django
parses. Each is a clear 4xx problem (or the 405 the method deserves), never a 500 or a silent pick.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def test_a_filter_given_twice_is_a_400_not_the_last_one_silently(tenant_a, client) -> None:
    # given: the studio's owner
    client.force_login(tenant_a.owner)
    # when: the shopper's downloads are asked for two addresses at once
    response = client.get("/api/v1/entitlements?email=ann@example.test&email=bob@example.test")
    # then: refused, naming the parameter (before: Bob's downloads alone, as if Ann's were none)
    assert _problem(response, 400)["errors"] == {"email": ["Give this parameter once."]}
    assert client.get("/api/v1/entitlements?email=ann@example.test").status_code == 200


def test_a_method_the_operation_does_not_serve_is_a_405_whatever_its_query(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    # when: a method the endpoint has no handler for, with a query string
    put = client.put("/api/v1/payouts?status=failed", HTTP_IDEMPOTENCY_KEY="k-405")
    get = client.get("/api/v1/events/1/products/downloads?x=1")
    # then: 405, as without the query (before: a 400 about the query, as if the method were served)
    assert _problem(put, 405)["type"] == "/problems/method-not-allowed"
    assert _problem(get, 405)["type"] == "/problems/method-not-allowed"


def test_options_takes_the_query_parameters_get_takes(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    # when: OPTIONS on the URL a GET would use, filter included
    described = client.options("/api/v1/payouts?status=failed&limit=5")
    # then: described, as without the query (before: 400 "OPTIONS takes no query parameters")
    assert described.status_code == 200, described.content
    # and: a name GET does not take is refused as it is for GET
    assert set(_problem(client.options("/api/v1/payouts?stauts=failed"), 400)["errors"]) == {"stauts"}


def test_more_query_parameters_than_django_parses_is_a_400_problem(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    # when: more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.get(f"/api/v1/tenancy/whoami?{query}")
    # then: a 400 problem saying so (before: a 500)
    body = _problem(response, 400)
    assert body["type"] == "/problems/too-many-parameters"
    assert str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in body["detail"]
