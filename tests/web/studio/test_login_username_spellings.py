"""The spellings of an account the studio's sign-in accepts: its username as Django's sign-in form
reads it (its UsernameField NFKC-normalises it before authenticating), and its e-mail address in
any case. The per-account sign-in budget holds for every one of them."""

from __future__ import annotations

import secrets
import unicodedata
from typing import Any, cast

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
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


# --- the e-mail address as a spelling of the account ---------------------------------------------
#
# Sign-in by e-mail address is supported: the invitation and the password e-mails go to that
# address, and a username made from it ("maria.lens", "maria.lens2") is easy to get wrong. The
# address matches as the invitations match it, whatever its case (the app keeps the local part as
# typed and the domain in lower case); an address that matches more than one account signs into
# none of them.


class CountingHasher(MD5PasswordHasher):
    """The test settings' hasher, counting the passwords it hashes: how long a sign-in takes is
    set by those (every other step is a few indexed queries). Checking a password hashes it once
    (`verify` calls `encode`), as does the stand-in hashing of a sign-in that found no account."""

    runs = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.runs += 1
        return super().encode(password, salt)


def _person(email: str, username: str | None = None) -> User:
    return cast(User, UserFactory(email=email, username=username or f"p{secrets.token_hex(4)}"))


def _signs_in(client: Client, username: str, password: str = "pw") -> bool:
    response = client.post("/studio/login/", {"username": username, "password": password})
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 302


def _signed_in_as(client: Client) -> int | None:
    user_id = client.session.get("_auth_user_id")
    return int(user_id) if user_id is not None else None


def test_the_invited_address_signs_in_whatever_its_case() -> None:
    local = f"Maria.Lens{secrets.token_hex(3)}"
    maria = _person(f"{local}@example.com")
    for spelling in (f"{local}@example.com", f"{local.lower()}@example.com", f"{local.upper()}@EXAMPLE.COM"):
        client = _fresh_client()
        assert _signs_in(client, spelling), spelling
        assert _signed_in_as(client) == maria.pk, spelling
    # and: a wrong password is refused in the usual words
    refused = _fresh_client().post("/studio/login/", {"username": f"{local}@example.com", "password": "nope"})
    assert refused.status_code == 200 and "did not match" in refused.content.decode()


def test_the_sign_in_page_asks_for_a_username_or_an_email_address() -> None:
    page = _fresh_client().get("/studio/login/").content.decode()
    assert "Username or e-mail address" in page


def test_an_address_of_two_accounts_signs_into_neither() -> None:
    # given: two accounts whose addresses differ only in case (the column is unique as typed; made
    # before the admin and the invitations matched addresses whatever their case), same password
    local = f"pat{secrets.token_hex(3)}"
    _person(f"{local}@example.com")
    _person(f"{local.capitalize()}@example.com")
    for spelling in (f"{local}@example.com", f"{local.capitalize()}@example.com", f"{local.upper()}@example.com"):
        client = _fresh_client()
        response = client.post("/studio/login/", {"username": spelling, "password": "pw"})
        # then: refused in the words of a wrong password, nobody signed in
        assert response.status_code == 200 and "did not match" in response.content.decode(), spelling
        assert _signed_in_as(client) is None, spelling


def test_a_username_spelled_like_an_address_is_that_account() -> None:
    # given: one account named by an address, another whose address it is
    address = f"sam{secrets.token_hex(3)}@example.com"
    named = _person(f"other{secrets.token_hex(3)}@example.com", username=address)
    named.set_password("named-password")
    named.save(update_fields=["password"])
    _person(address)
    # then: the username is the account it names; the address does not reach the other one
    client = _fresh_client()
    assert _signs_in(client, address, "named-password") and _signed_in_as(client) == named.pk
    assert not _signs_in(_fresh_client(), address, "pw")


def test_every_refusal_checks_one_password(settings: Any) -> None:
    """A refused sign-in takes as long whether the account exists, the address is unknown, or it
    is shared by two accounts: each checks (or hashes) one password, as a wrong password does."""
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    known = _person(f"kim{secrets.token_hex(3)}@example.com")
    shared = f"lee{secrets.token_hex(3)}"
    _person(f"{shared}@example.com")
    _person(f"{shared.upper()}@example.com")
    attempts = {
        "wrong password": known.username,
        "wrong password, by address": known.email.upper(),
        "unknown username": f"nobody{secrets.token_hex(3)}",
        "unknown address": f"nobody{secrets.token_hex(3)}@example.com",
        "address of two accounts": f"{shared}@example.com",
    }
    for what, username in attempts.items():
        CountingHasher.runs = 0
        assert not _signs_in(_fresh_client(), username, "not-the-password"), what
        assert CountingHasher.runs == 1, what


def test_the_address_and_the_username_share_one_sign_in_budget(settings: Any) -> None:
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "10/5min"
    person = _person(f"Budget{secrets.token_hex(3)}@example.com")
    # given: ten wrong passwords, half by username, half by the address in another case
    wrong = [
        _fresh_client().post("/studio/login/", {"username": name, "password": f"g{n}"}).status_code
        for n, name in enumerate([person.username, person.email.lower()] * 5)
    ]
    assert wrong == [200] * 10
    # then: the account is locked whichever way it is spelled, the right password included
    for spelling in (person.username, person.email, person.email.upper()):
        response = _fresh_client().post("/studio/login/", {"username": spelling, "password": "pw"})
        assert response.status_code == 429, spelling


def test_signing_in_by_address_clears_the_accounts_failed_attempts(settings: Any) -> None:
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "10/5min"
    person = _person(f"clear{secrets.token_hex(3)}@example.com")
    # given: nine wrong passwords by username, then the right one by address
    for n in range(9):
        assert not _signs_in(_fresh_client(), person.username, f"g{n}")
    assert _signs_in(_fresh_client(), person.email.upper())
    # then: the username has its whole budget again (nine more wrong ones, then the right one)
    for n in range(9):
        assert not _signs_in(_fresh_client(), person.username, f"h{n}")
    assert _signs_in(_fresh_client(), person.username)
