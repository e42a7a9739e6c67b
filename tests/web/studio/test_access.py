"""Who gets in: sign-in, membership, the studio switch, roles, and tenant isolation."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.tenancy.context import tenant_context
from apps.tenancy.middleware import SESSION_TENANT_KEY
from apps.tenancy.models import Organization, User
from apps.web.studio.views.auth import wait_text
from tests.factories.tenancy import OrganizationFactory, UserFactory
from tests.web.studio.conftest import StudioPeople, new_event, new_member, new_user, signed_in, text

pytestmark = pytest.mark.django_db


def paid_checkout(org: Organization, email: str, amount_minor: int = 900) -> Checkout:
    with tenant_context(org.pk):
        return Checkout.objects.create(
            tenant=org,
            email=email,
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=amount_minor,
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )


@pytest.mark.parametrize(
    "path", ["/studio/", "/studio/events/", "/studio/sales/", "/studio/wallet/", "/studio/announcements/"]
)
def test_pages_send_anonymous_visitors_to_the_studio_login(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/studio/login/?next=")


def test_login_with_password_lands_on_the_studio_overview(studio: StudioPeople) -> None:
    # given: the login page
    client = Client()
    page = client.get("/studio/login/")
    assert page.status_code == 200 and 'name="password"' in text(page)
    # when: the owner signs in with the right password
    response = client.post("/studio/login/", {"username": studio.owner.username, "password": "pw"})
    # then: the overview of their studio
    assert response.status_code == 302 and response["Location"] == "/studio/"
    overview = client.get("/studio/")
    assert overview.status_code == 200 and studio.org.name in text(overview)


def test_a_wrong_password_re_renders_the_login_form() -> None:
    user = new_user()
    response = Client().post("/studio/login/", {"username": user.username, "password": "nope"})
    assert response.status_code == 200
    assert "did not match" in text(response)


def test_sign_in_attempts_are_limited_per_username(studio: StudioPeople, settings: Any) -> None:
    # given: 3 attempts a minute per username
    settings.STUDIO_LOGIN_RATE = "3/min"
    client = Client()
    username = studio.owner.username
    # when: three wrong passwords, then the right one
    wrong = [client.post("/studio/login/", {"username": username, "password": f"guess-{n}"}) for n in range(3)]
    limited = client.post("/studio/login/", {"username": username, "password": "pw"})
    # then: the fourth attempt is refused unchecked (429 with Retry-After), and nobody is signed in
    assert [r.status_code for r in wrong] == [200, 200, 200]
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in text(limited)
    # and: the page says the wait the header gives
    assert f"Please wait {wait_text(int(limited['Retry-After']))} and try again" in text(limited)
    assert client.get("/studio/").status_code == 302
    # and: another username from the same address still signs in
    other = Client().post("/studio/login/", {"username": studio.photographer.username, "password": "pw"})
    assert (other.status_code, other["Location"]) == (302, "/studio/")


def fresh_owner(studio: StudioPeople) -> User:
    """An owner whose username no earlier run has counted (the limiter's windows outlive a test)."""
    return new_member(studio.org, "owner", cast(User, UserFactory(username=f"owner-{secrets.token_hex(6)}")))


def fresh_client() -> Client:
    """A browser at an address no earlier run has counted."""
    return Client(REMOTE_ADDR=f"2001:db8:{secrets.token_hex(2)}::{secrets.token_hex(2)}")


def sign_in(client: Client, username: str, password: str) -> int:
    return client.post("/studio/login/", {"username": username, "password": password}).status_code


def test_successful_sign_ins_do_not_use_up_the_username_budget(studio: StudioPeople, settings: Any) -> None:
    # given: the default 10 attempts per username in 5 minutes, and one browser
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "10/5min"
    owner, client = fresh_owner(studio), fresh_client()
    # when: the owner signs in (and out) 15 times in a row
    statuses = []
    for _ in range(15):
        statuses.append(sign_in(client, owner.username, "pw"))
        client.post("/studio/logout/")
    # then: every sign-in is accepted
    assert statuses == [302] * 15


def test_ten_wrong_passwords_refuse_the_right_one(studio: StudioPeople, settings: Any) -> None:
    # given: the default 10 attempts per username in 5 minutes
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "10/5min"
    owner, client = fresh_owner(studio), fresh_client()
    # when: 10 wrong passwords, then the right one
    wrong = [sign_in(client, owner.username, f"guess-{n}") for n in range(10)]
    right = client.post("/studio/login/", {"username": owner.username, "password": "pw"})
    # then: the right one is refused unchecked, and nobody is signed in
    assert wrong == [200] * 10
    assert right.status_code == 429 and "Too many sign-in attempts" in text(right)
    assert client.get("/studio/").status_code == 302


def test_a_successful_sign_in_clears_the_failed_attempts_before_it(studio: StudioPeople, settings: Any) -> None:
    # given: 3 attempts per username, two of them already failed
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_RATE = "3/5min"
    owner, client = fresh_owner(studio), fresh_client()
    assert [sign_in(client, owner.username, f"typo-{n}") for n in range(2)] == [200, 200]
    # when: the owner gets it right, signs out, and mistypes again
    assert sign_in(client, owner.username, "pw") == 302
    client.post("/studio/logout/")
    again = [sign_in(client, owner.username, f"again-{n}") for n in range(4)]
    # then: a whole budget of 3 failures is available again, and only the fourth is refused
    assert again == [200, 200, 200, 429]


def test_logout_signs_out(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    assert client.post("/studio/logout/").status_code == 302
    assert client.get("/studio/").status_code == 302


def test_a_user_without_membership_gets_a_clear_403() -> None:
    client = signed_in(new_user())
    response = client.get("/studio/")
    assert response.status_code == 403
    assert "not a member of any studio" in text(response)


def test_a_member_of_two_studios_picks_one_and_can_switch(studio: StudioPeople, other_studio: StudioPeople) -> None:
    # given: the owner of studio A is also staff in studio B
    new_member(other_studio.org, "staff", studio.owner)
    new_event(studio.org, title="Alpha Run")
    new_event(other_studio.org, title="Beta Gala")
    client = signed_in(studio.owner)
    # when: they open the studio without having chosen
    first = client.get("/studio/events/")
    # then: they are asked which studio, and come back to the page they wanted
    assert first.status_code == 302 and first["Location"].startswith("/studio/choose/")
    picker = client.get(first["Location"])
    assert studio.org.name in text(picker) and other_studio.org.name in text(picker)
    chosen = client.post("/studio/choose/", {"studio": other_studio.org.pk, "next": "/studio/events/"})
    assert chosen.status_code == 303 and chosen["Location"] == "/studio/events/"
    assert client.session[SESSION_TENANT_KEY] == other_studio.org.pk
    page = client.get("/studio/events/")
    assert "Beta Gala" in text(page) and "Alpha Run" not in text(page)
    # and: their role there is staff, so no event can be created
    assert "Create an event" not in text(page)
    # when: they switch back
    client.post("/studio/choose/", {"studio": studio.org.pk})
    page = client.get("/studio/events/")
    assert "Alpha Run" in text(page) and "Beta Gala" not in text(page)


def test_a_link_to_another_of_ones_studios_offers_to_switch_to_it(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: the owner of studio A, also staff in studio B, working in A
    new_member(other_studio.org, "staff", studio.owner)
    theirs = new_event(other_studio.org, title="Beta Gala")
    client = signed_in(studio.owner)
    client.post("/studio/choose/", {"studio": studio.org.pk})
    # when: they open a link to B's event (a colleague's, a bookmark)
    missing = client.get(f"/studio/events/{theirs.pk}/")
    # then: not found in A, with a way to open it in another of their studios
    assert missing.status_code == 404
    switch = f"/studio/choose/?next=%2Fstudio%2Fevents%2F{theirs.pk}%2F"
    assert f'<a class="standalone" href="{switch}">' in text(missing)
    chosen = client.post("/studio/choose/", {"studio": other_studio.org.pk, "next": f"/studio/events/{theirs.pk}/"})
    assert "Beta Gala" in text(client.get(chosen["Location"]))


def test_choosing_a_studio_one_is_not_a_member_of_is_refused(studio: StudioPeople, other_studio: StudioPeople) -> None:
    new_member(other_studio.org, "photographer", studio.photographer)
    client = signed_in(studio.photographer)
    stranger = cast(Organization, OrganizationFactory())  # a third studio, with a member
    new_member(stranger, "owner")
    response = client.post("/studio/choose/", {"studio": stranger.pk})
    assert response.status_code == 400
    assert SESSION_TENANT_KEY not in client.session


def test_a_user_of_studio_a_never_sees_studio_b(studio: StudioPeople, other_studio: StudioPeople) -> None:
    # given: an event and a sale in each studio
    mine = new_event(studio.org, title="Alpha Run")
    theirs = new_event(other_studio.org, title="Beta Gala")
    paid_checkout(studio.org, "alice@example.test")
    paid_checkout(other_studio.org, "bob@example.test")
    client = signed_in(studio.owner)
    # then: lists show only studio A's rows
    events = text(client.get("/studio/events/"))
    assert "Alpha Run" in events and "Beta Gala" not in events
    sales = text(client.get("/studio/sales/"))
    assert "alice@example.test" in sales and "bob@example.test" not in sales
    overview = text(client.get("/studio/"))
    assert "Beta Gala" not in overview and "bob@example.test" not in overview
    # and: studio B's event is not found, even by id, and cannot be written to
    assert client.get(f"/studio/events/{theirs.pk}/").status_code == 404
    assert client.get(f"/studio/events/{mine.pk}/").status_code == 200
    prices = client.post(
        f"/studio/events/{theirs.pk}/prices", {"nonce": "n" * 24, "currency": "EUR", "download": "9.00"}
    )
    assert prices.status_code == 404


def test_an_id_beyond_bigint_is_a_404_not_an_error(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    assert client.get("/studio/events/99999999999999999999999/").status_code == 404


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("photographer", "/studio/sales/", 403),
        ("photographer", "/studio/announcements/", 403),
        ("staff", "/studio/sales/", 200),
        ("staff", "/studio/announcements/", 200),
        ("photographer", "/studio/wallet/", 200),
        ("staff", "/studio/events/", 200),
    ],
)
def test_pages_follow_the_api_roles(studio: StudioPeople, role: str, path: str, status: int) -> None:
    response = signed_in(getattr(studio, role)).get(path)
    assert response.status_code == status
    if status == 403:
        assert f"you are {role} here" in text(response)


def test_navigation_shows_only_what_the_role_may_open(studio: StudioPeople) -> None:
    photographer = text(signed_in(studio.photographer).get("/studio/"))
    assert 'href="/studio/sales/"' not in photographer and 'href="/studio/announcements/"' not in photographer
    owner = text(signed_in(studio.owner).get("/studio/"))
    assert 'href="/studio/sales/"' in owner and 'href="/studio/announcements/"' in owner


@pytest.mark.parametrize(
    ("seconds", "said"), [(1, "1 second"), (12, "12 seconds"), (60, "1 minute"), (61, "2 minutes"), (240, "4 minutes")]
)
def test_the_wait_is_said_in_seconds_then_whole_minutes(seconds: int, said: str) -> None:
    assert wait_text(seconds) == said
