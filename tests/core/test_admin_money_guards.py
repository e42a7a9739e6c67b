"""The Django admin cannot change what decides money behind the services' backs: prices, price
lists, products, a photo's photographer, memberships and API keys are read-only or go through
the audited services."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Price, Product
from apps.catalog.products import PRODUCT_DEACTIVATED
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey, AuditLog, Membership
from apps.tenancy.services import api_key_issue, api_key_revoke
from tests.factories.catalog import PhotoFactory, PriceFactory, ProductFactory
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="operator"))
    return client


def audits(action: str) -> list[AuditLog]:
    with system_context("test: audit"):
        return list(AuditLog.objects.filter(action=action).order_by("id"))


def test_prices_cannot_be_changed_added_or_deleted(tenant_a: Any, admin_client: Client) -> None:
    with tenant_context(tenant_a.org.pk):
        price = PriceFactory(price_list__event__tenant=tenant_a.org, amount_minor=900)
    page = admin_client.get(f"/admin/catalog/price/{price.pk}/change/")
    assert page.status_code == 200 and b'name="amount_minor"' not in page.content
    posted = admin_client.post(f"/admin/catalog/price/{price.pk}/change/", {"amount_minor": "1"})
    assert posted.status_code == 403
    assert admin_client.get("/admin/catalog/price/add/").status_code == 403
    assert admin_client.post(f"/admin/catalog/price/{price.pk}/delete/", {"post": "yes"}).status_code == 403
    with tenant_context(tenant_a.org.pk):
        assert Price.objects.get(pk=price.pk).amount_minor == 900


def test_a_photos_photographer_is_read_only(tenant_a: Any, admin_client: Client) -> None:
    photo = PhotoFactory(event__tenant=tenant_a.org)
    page = admin_client.get(f"/admin/catalog/photo/{photo.pk}/change/")
    assert page.status_code == 200 and b'name="photographer"' not in page.content


def test_products_stop_and_resume_selling_through_the_audited_service(tenant_a: Any, admin_client: Client) -> None:
    with tenant_context(tenant_a.org.pk):
        product = ProductFactory(event__tenant=tenant_a.org)
    # when: the operator stops selling it from the list
    response = admin_client.post(
        "/admin/catalog/product/", {"action": "deactivate", "_selected_action": [str(product.pk)]}, follow=True
    )
    # then: it is inactive, the change audited with the operator, and the form edits nothing
    assert response.status_code == 200
    with tenant_context(tenant_a.org.pk):
        assert Product.objects.get(pk=product.pk).active is False
    [audit] = audits(PRODUCT_DEACTIVATED)
    assert audit.actor_label == "admin:operator"
    assert admin_client.post(f"/admin/catalog/product/{product.pk}/change/", {"active": "on"}).status_code == 403


def test_memberships_are_added_through_the_service_and_removals_are_audited(
    tenant_a: Any, admin_client: Client
) -> None:
    member = UserFactory()
    added = admin_client.post(
        "/admin/tenancy/membership/add/", {"user": member.pk, "tenant": tenant_a.org.pk, "role": "staff"}
    )
    assert added.status_code == 302
    with system_context("test"):
        membership = Membership.objects.get(user=member)
    assert membership.role == "staff" and [a.data["role"] for a in audits("membership.set")][-1] == "staff"
    # and: a role is never edited in place
    assert admin_client.post(f"/admin/tenancy/membership/{membership.pk}/change/", {"role": "owner"}).status_code == 403
    # when: removed
    removed = admin_client.post(f"/admin/tenancy/membership/{membership.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    [removal] = audits("membership.remove")
    assert (removal.target_id, removal.data, removal.actor_label) == (
        str(member.pk),
        {"role": "staff"},
        "admin:operator",
    )


def test_api_keys_are_only_revoked_through_the_audited_service(tenant_a: Any, admin_client: Client) -> None:
    issued = api_key_issue(tenant=tenant_a.org, name="integration")
    key = issued.api_key
    assert admin_client.post(f"/admin/tenancy/apikey/{key.pk}/change/", {"revoked_at": ""}).status_code == 403
    response = admin_client.post(
        "/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]}, follow=True
    )
    assert response.status_code == 200
    with system_context("test"):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert len(audits("api_key.revoke")) == 1


def test_the_admin_never_demotes_or_removes_a_studios_last_owner(tenant_a: Any, admin_client: Client) -> None:
    with system_context("test"):
        [owner] = Membership.objects.filter(tenant=tenant_a.org, role="owner")
    # when: the operator adds the last owner again as staff
    refused = admin_client.post(
        "/admin/tenancy/membership/add/", {"user": owner.user_id, "tenant": tenant_a.org.pk, "role": "staff"}
    )
    # then: the form says why, and no delete page is offered for them
    assert refused.status_code == 200 and b"the last owner" in refused.content
    assert admin_client.get(f"/admin/tenancy/membership/{owner.pk}/delete/").status_code == 403
    with system_context("test"):
        assert Membership.objects.get(pk=owner.pk).role == "owner"
    # and: a second owner may then be demoted through the service, audited with the operator
    second = UserFactory()
    admin_client.post("/admin/tenancy/membership/add/", {"user": second.pk, "tenant": tenant_a.org.pk, "role": "owner"})
    demoted = admin_client.post(
        "/admin/tenancy/membership/add/", {"user": owner.user_id, "tenant": tenant_a.org.pk, "role": "staff"}
    )
    assert demoted.status_code == 302, re.findall(r"errorlist[^<]*<li>([^<]*)", demoted.content.decode())
    with system_context("test"):
        assert Membership.objects.get(pk=owner.pk).role == "staff"
    assert audits("membership.set")[-1].actor_label == "admin:operator"


def shown_messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_revoking_keys_counts_only_those_it_revoked(tenant_a: Any, admin_client: Client) -> None:
    # given: two keys, one of them revoked already
    live, revoked = (api_key_issue(tenant=tenant_a.org, name=n).api_key for n in ("live", "old"))
    api_key_revoke(tenant=tenant_a.org, api_key_id=revoked.pk)
    # when: the operator revokes both
    response = admin_client.post(
        "/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [str(live.pk), str(revoked.pk)]}, follow=True
    )
    # then: the message counts the one it revoked, and says the other already was
    assert shown_messages(response) == ["Revoked 1 API key; 1 already revoked."]
    assert len(audits("api_key.revoke")) == 2
    # and: more than one is counted in the plural
    more = [api_key_issue(tenant=tenant_a.org, name=n).api_key for n in ("a", "b")]
    response = admin_client.post(
        "/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [str(k.pk) for k in more]}, follow=True
    )
    assert shown_messages(response) == ["Revoked 2 API keys."]


def test_stopping_and_resuming_products_counts_only_those_it_changed(tenant_a: Any, admin_client: Client) -> None:
    # given: two products, one of them no longer sold
    with tenant_context(tenant_a.org.pk):
        selling = ProductFactory(event__tenant=tenant_a.org)
        stopped = ProductFactory(event=selling.event, active=False)
    selected = [str(selling.pk), str(stopped.pk)]
    # when: the operator stops selling both, then resumes both, then resumes both again
    stop = admin_client.post(
        "/admin/catalog/product/", {"action": "deactivate", "_selected_action": selected}, follow=True
    )
    resume = admin_client.post(
        "/admin/catalog/product/", {"action": "reactivate", "_selected_action": selected}, follow=True
    )
    again = admin_client.post(
        "/admin/catalog/product/", {"action": "reactivate", "_selected_action": selected}, follow=True
    )
    # then: each message counts what changed and how many already were so
    assert shown_messages(stop) == ["Deactivated 1 product; 1 already inactive. Each change is audited."]
    assert shown_messages(resume) == ["Reactivated 2 products. Each change is audited."]
    assert shown_messages(again) == ["Reactivated 0 products; 2 already active. Each change is audited."]
    assert len(audits(PRODUCT_DEACTIVATED)) == 1
