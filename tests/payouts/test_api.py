"""The studio's payouts API: destinations (set, listed) and payouts (listed, one), tenant-scoped."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.ledger.projection import projection_rebuild
from apps.payouts.models import PayoutDestination
from apps.payouts.services import payout_batch_run, payout_submit
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import make_wallet

pytestmark = pytest.mark.django_db(transaction=True)


def put(client: Any, path: str, body: dict[str, Any], *, key: str | None = None) -> Any:
    return client.put(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def owner_session(tenant: Any) -> APIClient:
    """The studio's owner, signed in (session authentication)."""
    client = APIClient()
    client.force_login(tenant.owner)
    return client


def test_a_signed_in_owner_sets_a_photographers_destination_once_per_key(tenant_a: Any) -> None:
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    api = owner_session(tenant_a)
    path = f"/api/v1/payouts/destinations/{photographer.pk}"
    body = {"provider": "paypal", "destination": "Ann@Example.COM"}
    # when: set, then the same request retried with its key
    first = put(api, path, body, key="dest-1")
    again = put(api, path, body, key="dest-1")
    # then: stored normalised by the PayPal adapter, the retry a replay
    assert first.status_code == 200, first.content
    assert first.json()["destination"] == "Ann@example.com" and first.json()["user_id"] == photographer.pk
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    listed = tenant_a.client().get("/api/v1/payouts/destinations").json()
    assert [(d["user_id"], d["provider"]) for d in listed["results"]] == [(photographer.pk, "paypal")]


def test_an_api_key_cannot_redirect_payouts(tenant_a: Any) -> None:
    # given: a photographer paid to their own account, set by the owner
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    path = f"/api/v1/payouts/destinations/{photographer.pk}"
    assert put(owner_session(tenant_a), path, {"provider": "sandbox", "destination": "theirs"}).status_code == 200
    # when: the studio's API key (say, leaked) points it elsewhere
    response = put(tenant_a.client(), path, {"provider": "sandbox", "destination": "mallory"})
    # then: 403 with the reason, and the destination is unchanged
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert "signed-in owner" in response.json()["detail"]
    with system_context("test"):
        assert list(PayoutDestination.objects.values_list("destination", flat=True)) == ["theirs"]


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({"provider": "stripe", "destination": "cus_123"}, 400, "invalid-payout-destination"),
        ({"provider": "bitcoin", "destination": "x"}, 400, "validation-error"),
        ({"provider": "sandbox"}, 400, "validation-error"),
        ({"provider": "sandbox", "destination": "x", "extra": 1}, 400, "validation-error"),
    ],
)
def test_bad_destinations_get_a_problem_and_write_nothing(tenant_a: Any, body: Any, status: int, slug: str) -> None:
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    response = put(owner_session(tenant_a), f"/api/v1/payouts/destinations/{photographer.pk}", body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith(slug)
    with system_context("test"):
        assert not PayoutDestination.objects.exists()


def test_a_destination_for_someone_outside_the_studio_is_a_404(tenant_a: Any, tenant_b: Any) -> None:
    for user_id in (tenant_b.owner.pk, 999_999):
        response = put(
            owner_session(tenant_a),
            f"/api/v1/payouts/destinations/{user_id}",
            {"provider": "sandbox", "destination": "x"},
        )
        assert response.status_code == 404, response.content
    with system_context("test"):
        assert not PayoutDestination.objects.exists()


def test_payouts_are_listed_per_studio_newest_first_and_filtered_by_status(tenant_a: Any, tenant_b: Any) -> None:
    # given: two payouts of studio A (one paid) and one of studio B
    make_wallet(tenant_a.org, credited=2000)
    make_wallet(tenant_a.org, credited=3000)
    make_wallet(tenant_b.org, credited=4000)
    projection_rebuild()
    first, second, _ = payout_batch_run(trigger="test").payout_ids
    with tenant_context(tenant_a.org.pk):
        payout_submit(payout_id=first)
    api = tenant_a.client()
    # when / then
    listed = api.get("/api/v1/payouts").json()
    assert listed["count"] == 2 and [p["id"] for p in listed["results"]] == [str(second), str(first)]
    paid = api.get("/api/v1/payouts?status=paid").json()["results"]
    assert [(p["id"], p["amount_minor"], p["status"]) for p in paid] == [(str(first), 2000, "paid")]
    assert paid[0]["provider_payout_id"].startswith("sbx_po_")
    assert api.get(f"/api/v1/payouts/{first}").json()["status"] == "paid"
    assert api.get("/api/v1/payouts?status=lost").status_code == 400
    # and: a status given twice is refused, not read as the last one (which would list none here)
    twice = api.get("/api/v1/payouts?status=paid&status=pending")
    assert twice.status_code == 400 and twice["Content-Type"] == "application/problem+json"
    assert "status" in twice.json()["errors"]
    # and: studio B sees only its own
    other = tenant_b.client()
    assert other.get("/api/v1/payouts").json()["count"] == 1
    assert other.get(f"/api/v1/payouts/{first}").status_code == 404


def test_a_photographer_cannot_read_colleagues_payouts_or_destinations(tenant_a: Any) -> None:
    # given: a photographer of the studio, signed in
    user = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=user, role="photographer")
    client = APIClient()
    client.force_login(user)
    # then: destinations and payouts are the owner's (or the studio key's) to see
    assert client.get("/api/v1/payouts").status_code == 403
    assert client.get("/api/v1/payouts/destinations").status_code == 403
    assert client.get(f"/api/v1/payouts/{uuid.uuid4()}").status_code == 403
