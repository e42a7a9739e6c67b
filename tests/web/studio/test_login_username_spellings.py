"""The per-username sign-in budget holds for every spelling Django's sign-in form accepts as that
username (its UsernameField NFKC-normalises the username before authenticating)."""

from __future__ import annotations

import secrets
import unicodedata
from typing import Any, cast

import pytest
from django.test import Client

from apps.tenancy.models import User
from tests.factories.tenancy import UserFactory
from tests.web.studio.conftest import StudioPeople, new_member

pytestmark = pytest.mark.django_db


def _fresh_client() -> Client:
    return Client(REMOTE_ADDR=f"2001:db8:{secrets.token_hex(2)}::{secrets.token_hex(2)}")


def test_nfkc_variants_of_a_username_share_its_sign_in_budget(studio: StudioPeople, settings: Any) -> None:
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "10/5min"
    owner = new_member(studio.org, "owner", cast(User, UserFactory(username=f"owner{secrets.token_hex(4)}")))
    client = _fresh_client()
    # given: ten wrong passwords lock the username
    wrong = [
        client.post("/studio/login/", {"username": owner.username, "password": f"g{n}"}).status_code for n in range(10)
    ]
    assert wrong == [200] * 10
    assert client.post("/studio/login/", {"username": owner.username, "password": "x"}).status_code == 429
    # the same username written with a fullwidth first letter: NFKC folds it back to the username
    variant = chr(ord(owner.username[0]) - ord("a") + ord("\uff41")) + owner.username[1:]
    assert unicodedata.normalize("NFKC", variant) == owner.username
    # then: it is the same account, so it is refused too, even with the right password
    guess = client.post("/studio/login/", {"username": variant, "password": "still-guessing"})
    right = _fresh_client().post("/studio/login/", {"username": variant, "password": "pw"})
    assert guess.status_code == 429, "a locked username's NFKC variant gets a fresh guessing budget"
    assert right.status_code == 429, "the locked account signs in through the variant spelling"
