"""Factories for tenancy. Tenant-owned rows are created inside the row's tenant context."""

from __future__ import annotations

from typing import Any

import factory

from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, Organization, User


class TenantScopedFactory(factory.django.DjangoModelFactory):
    """Creates the row while acting for its tenant, as production code must (RLS WITH CHECK)."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = kwargs.get("tenant")
        tenant_id = tenant.pk if tenant is not None else kwargs.get("tenant_id")
        with tenant_context(tenant_id):
            return super()._create(model_class, *args, **kwargs)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"studio-{n}")
    name = factory.Sequence(lambda n: f"Studio {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.Sequence(lambda n: f"user{n}@example.test")
    password = factory.django.Password("pw")


class MembershipFactory(TenantScopedFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.OWNER
