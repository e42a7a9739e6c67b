"""Access-code guesses are limited per event and client address, where an IPv6 client is its /64
(`SHOP_ACCESS_CODE_RATE`), and per event by the wrong codes from every address together
(`SHOP_ACCESS_CODE_EVENT_RATE`): once that is spent, every attempt at the event's code is refused
unchecked, while sessions that entered it keep their access."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from apps.catalog.models import Event
from tests.web.shop.conftest import ACCESS_CODE, a_photo, an_event, url

pytestmark = pytest.mark.django_db


def guess(client: Client, gallery: str, code: str) -> Any:
    return client.post(gallery, {"code": code})


def test_every_address_of_one_ipv6_64_shares_the_access_code_budget(
    tenant_a: Any, protected_event: Event, settings: Any
) -> None:
    # given: 3 guesses per event and client address, and an attacker who spent them from one
    # address of its /64
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ACCESS_CODE_RATE = "3/min"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    first = Client(REMOTE_ADDR="2001:db8:77:1::1")
    assert [guess(first, gallery, f"g{n}").status_code for n in range(3)] == [403, 403, 403]
    assert guess(first, gallery, "g3").status_code == 429
    # when: it guesses on from the next addresses of the same /64
    statuses = [guess(Client(REMOTE_ADDR=f"2001:db8:77:1::{n + 2:x}"), gallery, f"h{n}").status_code for n in range(6)]
    # then: every one is refused, even the right code from yet another address of it
    assert statuses == [429] * 6
    last = guess(Client(REMOTE_ADDR="2001:db8:77:1::ffff"), gallery, ACCESS_CODE)
    assert last.status_code == 429
    assert int(last["Retry-After"]) >= 1
    # and: a client of another /64 still has its own budget
    assert guess(Client(REMOTE_ADDR="2001:db8:77:2::1"), gallery, ACCESS_CODE).status_code == 303


def test_wrong_codes_from_many_addresses_spend_the_events_budget(
    tenant_a: Any, protected_event: Event, settings: Any
) -> None:
    # given: 4 wrong codes an hour per event, 10 per address, and 4 wrong codes from 4 addresses
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ACCESS_CODE_RATE = "10/5min"
    settings.SHOP_ACCESS_CODE_EVENT_RATE = "4/hour"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    wrong = [guess(Client(REMOTE_ADDR=f"198.51.100.{n}"), gallery, f"g{n}").status_code for n in range(4)]
    assert wrong == [403] * 4
    # when: a fifth address sends the right code
    late = Client(REMOTE_ADDR="203.0.113.50")
    refused = guess(late, gallery, ACCESS_CODE)
    # then: refused unchecked with Retry-After, and the session is not let in
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 2 * 3600
    assert "Too many attempts" in refused.content.decode()
    assert late.get(gallery).status_code == 200
    assert 'name="code"' in late.get(gallery).content.decode()


def test_right_codes_and_empty_forms_do_not_spend_the_events_budget(
    tenant_a: Any, protected_event: Event, settings: Any
) -> None:
    # given: 2 wrong codes an hour per event
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ACCESS_CODE_EVENT_RATE = "2/hour"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    # when: three shoppers enter the right code and one posts the form empty
    rights = [guess(Client(REMOTE_ADDR=f"198.51.100.{n}"), gallery, ACCESS_CODE).status_code for n in range(3)]
    empty = guess(Client(REMOTE_ADDR="198.51.100.9"), gallery, "").status_code
    # then: all of them were answered, and the budget still admits both wrong codes
    assert rights == [303, 303, 303]
    assert empty == 400
    assert [guess(Client(REMOTE_ADDR="203.0.113.1"), gallery, f"g{n}").status_code for n in range(2)] == [403, 403]
    assert guess(Client(REMOTE_ADDR="203.0.113.2"), gallery, "g2").status_code == 429


def test_a_session_that_entered_the_code_keeps_its_access_once_the_budget_is_spent(
    tenant_a: Any, protected_event: Event, settings: Any
) -> None:
    # given: a shopper who entered the code, and then the event's budget spent by guessers
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ACCESS_CODE_EVENT_RATE = "2/hour"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    shopper = Client(REMOTE_ADDR="203.0.113.7")
    assert guess(shopper, gallery, ACCESS_CODE).status_code == 303
    for n in range(2):
        assert guess(Client(REMOTE_ADDR=f"198.51.100.{n}"), gallery, f"g{n}").status_code == 403
    assert guess(Client(REMOTE_ADDR="198.51.100.9"), gallery, ACCESS_CODE).status_code == 429
    # when: the shopper browses the gallery and posts the code form again
    page = shopper.get(gallery)
    again = guess(shopper, gallery, ACCESS_CODE)
    # then: the photos are shown, and the form sends it on as before
    assert page.status_code == 200
    assert 'name="code"' not in page.content.decode()
    assert again.status_code == 303


def test_another_events_budget_is_its_own(tenant_a: Any, protected_event: Event, settings: Any) -> None:
    # given: the protected event's budget of wrong codes spent
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ACCESS_CODE_EVENT_RATE = "1/hour"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    assert guess(Client(REMOTE_ADDR="198.51.100.1"), gallery, "g").status_code == 403
    assert guess(Client(REMOTE_ADDR="198.51.100.2"), gallery, "g").status_code == 429
    # when: another protected event of the studio is guessed at
    other = an_event(tenant_a.org, slug="other-gala", visibility=Event.Visibility.ACCESS_CODE,
                     access_code_hash=make_password(ACCESS_CODE))  # fmt: skip
    a_photo(other)
    # then: its code is checked as usual
    assert guess(Client(REMOTE_ADDR="198.51.100.3"), url(tenant_a.org.slug, other.slug), "g").status_code == 403
