"""The API key is read from `Authorization: Bearer <key>` whatever the case of "Bearer" (auth
scheme names are case-insensitive, RFC 9110 §11.1), by the authentication and by the check that
decides a large upload's 413 before its body is read (WSGI and ASGI alike). A key sent another
way is answered with what the API expects, not "credentials were not provided"."""

from __future__ import annotations

import uuid

import pytest
from django.test.client import BOUNDARY
from rest_framework.test import APIClient

from tests.core.test_asgi_body_limits import asgi_post
from tests.core.test_body_limits import MiB, multipart, wsgi_post
from tests.factories.catalog import EventFactory
from tests.fixtures import TenantBundle

pytestmark = pytest.mark.django_db

WHOAMI = "/api/v1/tenancy/whoami"
HOW_TO_SEND = "Send the API key as 'Authorization: Bearer <key>'"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_read_in_any_case(tenant_a: TenantBundle, scheme: str) -> None:
    # when: the studio's key is sent with the scheme spelled in some case
    response = APIClient().get(WHOAMI, HTTP_AUTHORIZATION=f"{scheme} {tenant_a.api_key}")
    # then: the key is the studio's
    assert response.status_code == 200, response.content
    assert response.json()["tenant_id"] == tenant_a.org.pk


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"HTTP_AUTHORIZATION": "Token {key}"}, id="Token scheme"),
        pytest.param({"HTTP_AUTHORIZATION": "Basic {key}"}, id="Basic scheme"),
        pytest.param({"HTTP_X_API_KEY": "{key}"}, id="X-Api-Key header"),
        pytest.param({}, id="nothing"),
    ],
)
def test_a_key_sent_another_way_is_told_how_to_send_it(tenant_a: TenantBundle, headers: dict[str, str]) -> None:
    # when: the key is sent in a way the API does not read (or not at all)
    sent = {name: value.format(key=tenant_a.api_key) for name, value in headers.items()}
    response = APIClient().get(WHOAMI, **sent)
    # then: 401 with the Bearer challenge, and the detail says how to send the key
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["type"] == "/problems/not-authenticated"
    assert HOW_TO_SEND in body["detail"]
    assert "not provided" not in body["detail"]
    assert tenant_a.api_key not in response.content.decode()


@pytest.mark.parametrize("authorization", ["bearer", "Bearer {key} extra", "bearer {key} extra"])
def test_a_malformed_bearer_header_in_any_case_is_refused_as_such(tenant_a: TenantBundle, authorization: str) -> None:
    response = APIClient().get(WHOAMI, HTTP_AUTHORIZATION=authorization.format(key=tenant_a.api_key))
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/authentication-failed"
    assert response["WWW-Authenticate"] == "Bearer"
    # and: told in the same words as a key sent another way, without echoing what was sent
    assert HOW_TO_SEND in response.json()["detail"]
    assert tenant_a.api_key not in response.content.decode()


def test_a_large_api_upload_with_a_lowercase_bearer_key_is_read_under_wsgi(tenant_a: TenantBundle) -> None:
    # given: a 2 MiB upload, over the small limit, which the API takes only with a live credential
    event = EventFactory(tenant=tenant_a.org)
    body = multipart(2 * MiB)
    # when: it is sent with the key under "bearer"
    status, _, content, stream = wsgi_post(
        f"/api/v1/events/{event.pk}/photos",
        body,
        headers={"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"bearer {tenant_a.api_key}"},
    )
    # then: the body was read whole and handed to the view (which judges the photo), no 413
    assert status != 413, content
    assert stream.taken == len(body)


def test_a_large_api_upload_with_a_lowercase_bearer_key_is_read_under_asgi(tenant_a: TenantBundle) -> None:
    event = EventFactory(tenant=tenant_a.org)
    body = multipart(3 * MiB)
    served = asgi_post(
        f"/api/v1/events/{event.pk}/photos",
        body,
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        headers={"Authorization": f"bearer {tenant_a.api_key}", "Idempotency-Key": str(uuid.uuid4())},
    )
    assert served.status != 413, served.body
    assert served.taken == len(body)
