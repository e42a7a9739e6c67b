"""The Django admin's actions are for platform superusers only (README, "Django admin").

Platform staff without the superuser flag may be given view (or change) permissions, to look:
those never offered an action that writes (kill switches released, refunds settled, keys
revoked, products stopped, dead letters replayed), nor the deletion of a studio's members.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory

from apps.ops.killswitch import kill_switch_engage
from apps.ops.models import KillSwitch
from apps.payouts.models import PayoutDestination
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Membership, User
from tests.factories.tenancy import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

MODEL_ADMINS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def staff_who_may_look(**memberships: Any) -> User:
    """Platform staff, not superuser, holding every view and change permission."""
    user = UserFactory(is_staff=True, is_superuser=False)
    user.user_permissions.set(Permission.objects.filter(codename__regex=r"^(view|change)_"))
    return User.objects.get(pk=user.pk)  # without the cached (empty) permissions


@pytest.mark.parametrize(("model", "model_admin"), MODEL_ADMINS, ids=[m._meta.label for m, _ in MODEL_ADMINS])
def test_no_admin_action_is_offered_to_staff_who_are_not_superusers(model: Any, model_admin: Any) -> None:
    # given: platform staff who may view and change everything, but are not superusers
    request = RequestFactory().get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
    request.user = staff_who_may_look()
    # when: the list's actions are asked for; then: none
    assert list(model_admin.get_actions(request)) == []


def test_staff_who_are_not_superusers_cannot_release_a_kill_switch() -> None:
    # given: the payouts kill switch engaged, and staff who may look at the switches
    with system_context("test: kill switch"):
        kill_switch_engage(capability="payouts", reason="provider incident", actor_label="test")
    client = Client()
    client.force_login(staff_who_may_look())
    # when: they post "Release now" on the switch
    client.post("/admin/ops/killswitch/", {"action": "release_now", "_selected_action": ["payouts"]})
    # then: still engaged
    assert KillSwitch.objects.get(capability="payouts").engaged


def test_a_studio_member_with_admin_access_cannot_remove_the_studios_members(tenant_a: Any) -> None:
    # given: a photographer of the studio who is also platform staff (view permissions only)
    staff = staff_who_may_look()
    MembershipFactory(tenant=tenant_a.org, user=staff, role="photographer")
    colleague = MembershipFactory(tenant=tenant_a.org, user=UserFactory(), role="photographer")
    client = Client()
    client.force_login(staff)
    # when: they delete a colleague's membership from the admin
    response = client.post(f"/admin/tenancy/membership/{colleague.pk}/delete/", {"post": "yes"})
    # then: refused; the colleague is still a member
    assert response.status_code == 403
    with tenant_context(tenant_a.org.pk):
        assert Membership.objects.filter(pk=colleague.pk).exists()


def test_a_studio_member_with_admin_access_cannot_redirect_a_payout_destination(tenant_a: Any) -> None:
    # given: the owner's payout destination, and a photographer of the studio who is platform staff
    with tenant_context(tenant_a.org.pk):
        destination = PayoutDestination.objects.create(
            tenant=tenant_a.org, owner=tenant_a.owner, provider="sandbox", destination="owner-account"
        )
    staff = staff_who_may_look()
    MembershipFactory(tenant=tenant_a.org, user=staff, role="photographer")
    client = Client()
    client.force_login(staff)
    # when: they post the destination's change form naming their own account
    response = client.post(
        f"/admin/payouts/payoutdestination/{destination.pk}/change/",
        {"provider": "sandbox", "destination": "my-own-account"},
    )
    # then: refused; the owner is still paid to their account
    assert response.status_code == 403
    with tenant_context(tenant_a.org.pk):
        assert PayoutDestination.objects.get(pk=destination.pk).destination == "owner-account"
