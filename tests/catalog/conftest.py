"""Catalog test helpers: idempotent API calls and signed-in members."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.tenancy.models import Organization, User
from tests.factories.tenancy import MembershipFactory, UserFactory


def post(client: APIClient, url: str, data: Any = None, *, multipart: bool = False, key: str | None = None) -> Any:
    """POST with a fresh Idempotency-Key (JSON unless multipart)."""
    return client.post(
        url,
        data,
        format="multipart" if multipart else "json",
        HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()),
    )


@pytest.fixture
def member_client() -> Callable[..., tuple[APIClient, User]]:
    """A session-authenticated client for a new member of `org` with `role`."""

    def make(org: Organization, role: str) -> tuple[APIClient, User]:
        user = UserFactory()
        MembershipFactory(tenant=org, user=user, role=role)
        client = APIClient()
        client.force_login(user)
        return client, user

    return make
