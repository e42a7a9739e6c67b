"""Studio dashboard fixtures: one studio with an owner, a photographer and a staff member, a
second studio, and helpers to sign in, to submit a page's forms as a browser would, and to make a
sale."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import pytest
from django.test import Client

from apps.catalog.models import Event, Photo
from apps.tenancy.models import Membership, Organization, User
from tests.factories.catalog import EventFactory, PhotoFactory
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import TenantBundle

# Typed fronts for the factories (factory_boy's classes are not typed as their models).


def new_user() -> User:
    return cast(User, UserFactory())


def new_member(org: Organization, role: str, user: User | None = None) -> User:
    membership = cast(Membership, MembershipFactory(tenant=org, user=user or new_user(), role=role))
    return membership.user


def new_event(org: Organization, **fields: Any) -> Event:
    return cast(Event, EventFactory(tenant=org, **fields))


def new_photo(event: Event, **fields: Any) -> Photo:
    return cast(Photo, PhotoFactory(event=event, **fields))


@dataclass
class StudioPeople:
    org: Organization
    owner: User
    photographer: User
    staff: User
    bundle: TenantBundle


def people_of(bundle: TenantBundle) -> StudioPeople:
    photographer, staff = new_member(bundle.org, "photographer"), new_member(bundle.org, "staff")
    return StudioPeople(org=bundle.org, owner=bundle.owner, photographer=photographer, staff=staff, bundle=bundle)


@pytest.fixture
def studio(tenant_a: TenantBundle) -> StudioPeople:
    return people_of(tenant_a)


@pytest.fixture
def other_studio(tenant_b: TenantBundle) -> StudioPeople:
    return people_of(tenant_b)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


_FORM = re.compile(r'<form\b[^>]*\baction="(?P<action>[^"]*)"[^>]*>(?P<body>.*?)</form>', re.S)
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def refund_lines_on(page: Any) -> list[str]:
    """The line ids the sale page's refund form offers (boxes, or the one item as a hidden field)."""
    return re.findall(r'name="lines" value="(\d+)"', page.content.decode())


def form_nonce_on(page: Any, action: str) -> str:
    """The nonce the page rendered into its form posting to `action` (fails if there is none)."""
    html = page.content.decode()
    for match in _FORM.finditer(html):
        if match.group("action") == action:
            found = _NONCE.search(match.group("body"))
            assert found, f"the form posting to {action} has no nonce"
            return found.group(1)
    raise AssertionError(f"no form posts to {action}")


def text(response: Any) -> str:
    return response.content.decode()


def sold(studio: StudioPeople, shop: Any, *lines: dict[str, Any], pay: bool = True) -> str:
    """A checkout of `lines` through the studio's API key, paid with the sandbox unless `pay` is
    False, its messages consumed and the mail outbox emptied; returns its id. Needs the
    `empty_broker` fixture."""
    from django.core import mail

    from tests.commerce.fixtures import checkout_body, post_checkout
    from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid

    created = post_checkout(studio.bundle.client(), checkout_body(shop, *lines))
    assert created.status_code == 201, created.content
    checkout_id = str(created.json()["id"])
    drain_outbox()
    if pay:
        assert deliver([sandbox_paid(checkout_id)]) == [200]
        drain_outbox()
    mail.outbox.clear()
    return checkout_id


@pytest.fixture
def sale(studio: StudioPeople) -> str:
    """A paid sale of a download (9.00) and an unshipped A4 print (25.00): 34.00 EUR in all (the
    refund tests' sale; tests/commerce reaches it through its conftest)."""
    from tests.factories.commerce import make_shop

    shop = make_shop(org=studio.org)
    return sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})


@pytest.fixture
def sale3(studio: StudioPeople) -> str:
    """A paid sale of two downloads (9.00 each, two photos) and an unshipped A4 print (25.00):
    43.00 EUR in all."""
    from tests.factories.commerce import make_shop

    shop = make_shop(org=studio.org)
    _, second = shop.add_photo()
    return sold(studio, shop, {"product": shop.download.pk}, {"product": second.pk}, {"product": shop.print.pk})
