"""Every page of the Django admin renders for a platform superuser, with real rows in it.

Operators live in the admin: a changelist, search, add or change page that raises is found here
rather than by the person who needed it. Rows come from the demo seed plus one checkout, one
checkout paid and partly refunded through the sandbox webhooks, ledger accounts with a debit
and a buffered one, the projections rebuilt, a payout batch, and what all that writes (outbox,
inbox, idempotency keys, audit, entitlements, receipt, webhook events, payouts).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db.models import Model
from django.test import Client, RequestFactory

from apps.ledger.projection import projection_rebuild
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context
from tests.commerce.fixtures import empty_broker  # noqa: F401 - a fixture, used by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_refunded
from tests.factories.tenancy import UserFactory
from tests.payouts.helpers import make_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

MODEL_ADMINS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.fixture
def populated(make_tenant: Any, settings: Any) -> None:
    call_command("seed_demo", verbosity=0)
    shop = make_tenant()
    api = shop.client()

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = api.post(path, data=body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
        assert response.status_code in (200, 201, 202), response.content
        return response.json()

    event = post("/api/v1/events", {"title": "Admin run", "date": "2026-11-24", "slug": "admin-run"})
    product = post(f"/api/v1/events/{event['id']}/products", {"kind": "bulk"})
    post(f"/api/v1/events/{event['id']}/prices", {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 900}]})
    checkout = post(
        "/api/v1/checkouts", {"email": "a@example.test", "provider": "sandbox", "lines": [{"product": product["id"]}]}
    )
    drain_outbox()  # the payment session
    deliver([sandbox_paid(checkout["id"])])
    drain_outbox()  # paid: entitlements, wallet credit, receipt
    deliver([sandbox_refunded(checkout["id"], 300)])
    drain_outbox()
    account = post("/api/v1/ledger/accounts", {"currency": "EUR"})
    post("/api/v1/ledger/debits", {"account_id": account["id"], "amount_minor": 5, "currency": "EUR"})
    settings.LEDGER_DEGRADED_MODE = "on"
    post("/api/v1/ledger/debits", {"account_id": account["id"], "amount_minor": 7, "currency": "EUR"})
    make_wallet(shop.org, credited=2500)  # a photographer due for a payout
    with system_context("test: admin pages"):
        projection_rebuild()
    assert payout_batch_run(trigger="admin pages").payout_ids


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _first(model: type[Model]) -> Model | None:
    with system_context("test: admin pages"):
        return model._default_manager.order_by("pk").first()


@pytest.mark.parametrize(("model", "model_admin"), MODEL_ADMINS, ids=[m._meta.label for m, _ in MODEL_ADMINS])
def test_admin_pages_render(populated: None, admin_client: Client, model: type[Model], model_admin: Any) -> None:
    # given: rows of every kind (`populated`); the model's list, search, add, change and history
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    pages = [base]
    if model_admin.search_fields:
        pages.append(f"{base}?q=a")
    if model_admin.has_add_permission(_superuser_request()):
        pages.append(f"{base}add/")
    row = _first(model)
    if row is not None:
        pages += [f"{base}{row.pk}/change/", f"{base}{row.pk}/history/"]
    # when: a platform superuser opens each; then: every one renders
    statuses = {page: admin_client.get(page).status_code for page in pages}
    assert statuses == dict.fromkeys(pages, 200)


def _superuser_request() -> Any:
    """A request carrying a superuser, for the admin's own permission checks."""
    request = RequestFactory().get("/admin/")
    request.user = UserFactory.build(is_staff=True, is_superuser=True, is_active=True)
    return request
