"""The API keys page: owners create a key (its secret shown once, never in a URL, a message or a
log), revoke one (at once for the API), and nobody else manages them."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client

from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, Organization
from apps.tenancy.selectors import api_key_resolve
from apps.tenancy.services import api_key_issue, hash_api_key
from apps.web.studio.views import api_keys as api_keys_views
from tests.tenancy.helpers import audits_of
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, text

pytestmark = pytest.mark.django_db

PAGE = "/studio/api-keys/"
RAW_KEY = re.compile(r"drk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
SHOWN_BEFORE = "was shown once, right after it was created, and is not shown again"


def revoke_url(api_key: ApiKey | int) -> str:
    return f"/studio/api-keys/{api_key if isinstance(api_key, int) else api_key.pk}/revoke"


def keys_of(org: Organization) -> list[ApiKey]:
    with tenant_context(org.pk):
        return list(ApiKey.objects.filter(tenant=org).order_by("id"))


def whoami(raw_key: str) -> Any:
    return Client().get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=f"Bearer {raw_key}")


def create(client: Client, name: str, nonce: str | None = None) -> Any:
    nonce = nonce or form_nonce_on(client.get(PAGE), PAGE)
    return client.post(PAGE, {"nonce": nonce, "name": name})


def secrets_on(response: Any) -> list[str]:
    return RAW_KEY.findall(text(response))


def new_key(org: Organization, name: str = "storefront") -> tuple[ApiKey, str]:
    issued = api_key_issue(tenant=org, name=name)
    return issued.api_key, issued.raw_key


# --- creating a key and seeing its secret once ----------------------------------------------


def test_owner_creates_a_key_and_sees_its_secret_once(studio: StudioPeople, caplog: pytest.LogCaptureFixture) -> None:
    # given: the owner on the API keys page (the studio already has its fixture key)
    caplog.set_level(logging.DEBUG)
    client = signed_in(studio.owner)
    before = len(keys_of(studio.org))
    # when: a key is created
    created = create(client, "Website storefront")
    # then: one new key, and the redirect names it by id, never by its secret
    assert created.status_code == 303
    keys = keys_of(studio.org)
    assert len(keys) == before + 1
    key = keys[-1]
    assert (key.name, key.revoked_at) == ("Website storefront", None)
    assert created["Location"] == f"{PAGE}?created={key.pk}"
    # when: the browser follows it
    shown = client.get(created["Location"])
    # then: the secret is on that page, once, and no cache may keep the page
    assert shown.status_code == 200
    [raw_key] = secrets_on(shown)
    assert hash_api_key(raw_key) == key.key_hash and raw_key.startswith(f"drk_{key.prefix}_")
    assert "Copy it now: it will not be shown again." in text(shown)
    assert "no-store" in shown["Cache-Control"]
    # and: it works against the API at once, for this studio
    answer = whoami(raw_key)
    assert answer.status_code == 200 and answer.json()["tenant_slug"] == studio.org.slug
    # when: the page is read again (a refresh, Back, the same URL)
    again = client.get(created["Location"])
    listing = client.get(PAGE)
    # then: the secret is gone for good: not on the page, not in the session
    assert secrets_on(again) == secrets_on(listing) == []
    assert SHOWN_BEFORE in text(again)
    assert "drk_" + key.prefix + "_…" in text(listing)
    assert api_keys_views.REVEAL_SESSION_KEY not in client.session
    # and: the creation is audited with its owner, and nothing logged or audited holds the secret
    [audit] = [a for a in audits_of(studio.org, "api_key.issue") if a.target_id == str(key.pk)]
    assert audit.actor_user_id == studio.owner.pk
    assert raw_key not in str(audit.data)
    assert raw_key not in caplog.text and all(raw_key not in str(r.args) for r in caplog.records)


def test_a_double_submitted_form_makes_one_key_and_its_replays_never_show_the_secret_again(
    studio: StudioPeople,
) -> None:
    # given: one rendered create form
    client = signed_in(studio.owner)
    nonce = form_nonce_on(client.get(PAGE), PAGE)
    before = len(keys_of(studio.org))
    # when: it is sent twice (a double click)
    first = create(client, "Lab integration", nonce)
    second = create(client, "Lab integration", nonce)
    # then: one key; both land on the same URL, which holds no secret
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"]
    assert not RAW_KEY.search(first["Location"])
    assert len(keys_of(studio.org)) == before + 1
    # when: the browser follows the second redirect (it dropped the first)
    # then: that page shows the secret, and the first one no longer does
    assert len(secrets_on(client.get(second["Location"]))) == 1
    assert secrets_on(client.get(first["Location"])) == []
    # when: the form is resubmitted later (Back, then send again)
    third = create(client, "Lab integration", nonce)
    # then: the same outcome URL, still one key, and no secret on it
    assert third.status_code == 303 and third["Location"] == first["Location"]
    after = client.get(third["Location"])
    assert secrets_on(after) == [] and SHOWN_BEFORE in text(after)
    assert len(keys_of(studio.org)) == before + 1
    assert len(audits_of(studio.org, "api_key.issue")) == before + 1


def test_a_secret_not_claimed_in_time_is_never_shown(studio: StudioPeople) -> None:
    # given: a key created, its redirect not followed for longer than the slot lives
    client = signed_in(studio.owner)
    created = create(client, "Forgotten")
    session = client.session
    slots = session[api_keys_views.REVEAL_SESSION_KEY]
    assert len(slots) == 1
    for slot in slots.values():
        slot["until"] -= api_keys_views.REVEAL_SECONDS + 1
    session[api_keys_views.REVEAL_SESSION_KEY] = slots
    session.save()
    # when: the page is opened
    late = client.get(created["Location"])
    # then: no secret, the reason, and the slot is gone
    assert late.status_code == 200
    assert secrets_on(late) == [] and SHOWN_BEFORE in text(late)
    assert api_keys_views.REVEAL_SESSION_KEY not in client.session


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "This field is required."),
        ("   ", "This field is required."),
        ("x" * 101, "Ensure this value has at most 100 characters (it has 101)."),
        # A text-direction override would show the list and the revoke page another name (the
        # rule of titles, as for a studio's or an event's name).
        ("Website \u202eedoc-kcatS", "Control characters (including text-direction overrides) are not allowed."),
        ("Website\tstorefront", "Control characters (including text-direction overrides) are not allowed."),
    ],
)
def test_a_bad_name_is_refused_in_the_form_and_writes_nothing(studio: StudioPeople, name: str, error: str) -> None:
    client = signed_in(studio.owner)
    before = len(keys_of(studio.org))
    response = create(client, name)
    assert response.status_code == 400
    assert error in text(response)
    assert secrets_on(response) == []
    assert len(keys_of(studio.org)) == before
    assert len(audits_of(studio.org, "api_key.issue")) == before
    assert api_keys_views.REVEAL_SESSION_KEY not in client.session


def test_a_name_of_100_characters_is_accepted(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    response = create(client, "n" * 100)
    assert response.status_code == 303
    assert keys_of(studio.org)[-1].name == "n" * 100


def test_a_create_form_without_its_nonce_is_refused(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    before = len(keys_of(studio.org))
    response = client.post(PAGE, {"name": "No nonce"})
    assert response.status_code == 400 and "reload the page" in text(response)
    assert len(keys_of(studio.org)) == before


# --- the list -------------------------------------------------------------------------------


def test_the_list_shows_keys_newest_first_with_their_status_in_pages(studio: StudioPeople) -> None:
    # given: 30 keys besides the fixture's, the oldest of them revoked
    client = signed_in(studio.owner)
    made = [new_key(studio.org, f"key-{n:02d}")[0] for n in range(30)]
    revoke = client.get(revoke_url(made[0]))
    client.post(revoke_url(made[0]), {"nonce": form_nonce_on(revoke, revoke_url(made[0]))})
    # when: the pages are read
    first, second = client.get(PAGE), client.get(f"{PAGE}?page=2")
    # then: 25 a page, newest first, each with its prefix and status
    names = re.findall(r'<tr id="api-key-\d+">\s*<th scope="row">([^<]+)</th>', text(first))
    assert names == [f"key-{n:02d}" for n in range(29, 4, -1)]
    later = re.findall(r'<tr id="api-key-\d+">\s*<th scope="row">([^<]+)</th>', text(second))
    assert later == [f"key-{n:02d}" for n in range(4, -1, -1)] + ["test"]
    assert f"drk_{made[29].prefix}_…" in text(first)
    row = re.search(rf'<tr id="api-key-{made[0].pk}">.*?</tr>', text(second), re.S)
    assert row and "revoked" in row.group(0) and "Revoke" not in row.group(0)
    assert "Page 1 of 2" in text(first)


# --- revoking -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the cached key is dropped when the revocation commits
def test_owner_revokes_a_key_which_stops_working_at_once_and_is_audited(studio: StudioPeople) -> None:
    # given: a key the API accepts (and has cached)
    key, raw_key = new_key(studio.org)
    assert whoami(raw_key).status_code == 200
    client = signed_in(studio.owner)
    # when: the owner confirms its revocation
    confirm = client.get(revoke_url(key))
    assert confirm.status_code == 200 and "Revoke “storefront” now" in text(confirm)
    nonce = form_nonce_on(confirm, revoke_url(key))
    revoked = client.post(revoke_url(key), {"nonce": nonce})
    # then: back to the list, the key revoked, refused by the API, and the revocation audited
    assert revoked.status_code == 303 and revoked["Location"] == PAGE
    listing = client.get(PAGE)
    assert "revoked: requests that use it are refused from now on" in text(listing)
    assert whoami(raw_key).status_code == 401
    [row] = [k for k in keys_of(studio.org) if k.pk == key.pk]
    assert row.revoked_at is not None
    [audit] = audits_of(studio.org, "api_key.revoke")
    assert (audit.target_id, audit.actor_user_id) == (str(key.pk), studio.owner.pk)
    # when: the same form is sent again, and a fresh one from a stale tab
    assert client.post(revoke_url(key), {"nonce": nonce})["Location"] == PAGE
    stale = client.post(revoke_url(key), {"nonce": "stale-tab-nonce-0000000"})
    # then: nothing changes, and the owner is told so
    assert stale.status_code == 303
    assert "was already revoked on" in text(client.get(PAGE))
    assert len(audits_of(studio.org, "api_key.revoke")) == 1
    assert [k.revoked_at for k in keys_of(studio.org) if k.pk == key.pk] == [row.revoked_at]
    # and: its confirmation page offers nothing more to do
    assert "<form" not in text(client.get(revoke_url(key))).split("<main", 1)[1]


@pytest.mark.django_db(transaction=True)  # the cached key is dropped when the revocation commits
def test_the_secret_shown_after_creation_is_refused_once_revoked(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    created = create(client, "Short-lived")
    [raw_key] = secrets_on(client.get(created["Location"]))
    key_id = int(created["Location"].rsplit("=", 1)[1])
    assert whoami(raw_key).status_code == 200
    confirm = client.get(revoke_url(key_id))
    client.post(revoke_url(key_id), {"nonce": form_nonce_on(confirm, revoke_url(key_id))})
    assert whoami(raw_key).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_request_resolving_the_key_while_it_is_revoked_cannot_keep_it_alive(
    studio: StudioPeople, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a key in use, and an API request that resolves it right after the revocation's
    # UPDATE, before its transaction commits (it still sees the key active and caches that)
    key, raw_key = new_key(studio.org)
    assert whoami(raw_key).status_code == 200
    real_revoke = api_keys_views.api_key_revoke
    competitor: list[object] = []

    def revoke_then_compete(**kwargs: Any) -> None:
        real_revoke(**kwargs)

        def resolve() -> None:
            try:
                competitor.append(api_key_resolve(raw_key=raw_key))
            finally:
                connection.close()

        thread = threading.Thread(target=resolve)
        thread.start()
        thread.join(10)

    monkeypatch.setattr(api_keys_views, "api_key_revoke", revoke_then_compete)
    client = signed_in(studio.owner)
    confirm = client.get(revoke_url(key))
    # when: the owner revokes it
    response = client.post(revoke_url(key), {"nonce": form_nonce_on(confirm, revoke_url(key))})
    # then: the competitor did see it active, yet the API refuses the key once the revocation committed
    assert response.status_code == 303
    assert competitor and competitor[0] is not None
    assert whoami(raw_key).status_code == 401


# --- who may -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_manage_api_keys(studio: StudioPeople, role: str) -> None:
    # given: a member who is not an owner, and a key of their studio
    key, raw_key = new_key(studio.org)
    before = len(keys_of(studio.org))
    client = signed_in(getattr(studio, role))
    # then: no link, and every page and form is a 403 that changes nothing
    assert "API keys" not in text(client.get("/studio/"))
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"nonce": "n" * 24, "name": "mine"}).status_code == 403
    assert client.get(revoke_url(key)).status_code == 403
    assert client.post(revoke_url(key), {"nonce": "n" * 24}).status_code == 403
    assert len(keys_of(studio.org)) == before
    assert whoami(raw_key).status_code == 200


def test_owners_see_the_link(studio: StudioPeople) -> None:
    overview = text(signed_in(studio.owner).get("/studio/"))
    assert f'href="{PAGE}"' in overview and ">API keys</a>" in overview


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_the_login(studio: StudioPeople, method: str) -> None:
    key, _ = new_key(studio.org)
    for path in (PAGE, revoke_url(key)):
        response = getattr(Client(), method)(path)
        assert response.status_code == 302
        assert urlsplit(response["Location"]).path == "/studio/login/"
    assert len(keys_of(studio.org)) == 2


def test_another_studios_key_is_not_found_and_not_listed(studio: StudioPeople, other_studio: StudioPeople) -> None:
    # given: a key of the other studio, which the API accepts
    theirs, raw_key = new_key(other_studio.org, "their storefront")
    client = signed_in(studio.owner)
    # then: this studio's owner can neither see, open nor revoke it
    listing = text(client.get(PAGE))
    assert "their storefront" not in listing and theirs.prefix not in listing
    assert client.get(revoke_url(theirs)).status_code == 404
    response = client.post(revoke_url(theirs), {"nonce": "n" * 24})
    assert response.status_code == 404 and "API key not found" in text(response)
    assert client.get(f"{PAGE}?created={theirs.pk}").status_code == 200
    assert SHOWN_BEFORE not in text(client.get(f"{PAGE}?created={theirs.pk}"))
    assert whoami(raw_key).status_code == 200
    assert audits_of(other_studio.org, "api_key.revoke") == []
