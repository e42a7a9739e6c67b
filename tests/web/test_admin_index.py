"""The platform admin's index as an operator reads it (QA walkthrough): every model is named in
plain English."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db


def test_the_admin_index_names_the_kill_switches_in_english() -> None:
    # given: a platform admin
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    # when: they open the admin's index and the kill switches' list
    index = client.get("/admin/").content.decode()
    listing = client.get("/admin/ops/killswitch/").content.decode()
    # then: the plural is "Kill switches", never Django's made-up "Kill switchs"
    assert "Kill switches" in index and "switchs" not in index.lower()
    assert "switchs" not in listing.lower()
