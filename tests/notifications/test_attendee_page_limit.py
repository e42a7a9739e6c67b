"""The attendee's signed-link pages share one request budget per client address
(`ATTENDEE_PAGE_RATE`): over it they answer a 429 problem with `Retry-After` and write nothing,
while other addresses keep theirs. The unsubscribe POST (a mail provider's one-click, sent from
servers that many users share) counts against its signed link instead; one whose token is not
ours counts against the address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.ops import ratelimit
from apps.tenancy.context import system_context
from tests.fixtures import forget_rate_limit_windows
from tests.notifications.helpers import event_with_attendees

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings: Any) -> Iterator[None]:
    settings.RATE_LIMIT_ENABLED = True
    forget_rate_limit_windows("attendee:page:")
    yield
    forget_rate_limit_windows("attendee:page:")


def token_of(tenant: Any) -> tuple[Attendee, str]:
    _, people = event_with_attendees(tenant.org, consenting=1)
    return people[0], attendee_token(tenant_id=tenant.org.pk, attendee_id=people[0].pk)


def unsubscribed_at(attendee: Attendee) -> Any:
    with system_context("test: attendee"):
        return Attendee.objects.get(pk=attendee.pk).unsubscribed_at


def link_generation(attendee: Attendee) -> int:
    with system_context("test: attendee"):
        return Attendee.objects.get(pk=attendee.pk).link_generation


def test_over_the_budget_the_pages_answer_429_and_write_nothing(tenant_a: Any, settings: Any) -> None:
    # given: a budget of three requests a minute per address, spent on the inbox, the
    # unsubscribe page and the drop-in page
    settings.ATTENDEE_PAGE_RATE = "3/min"
    attendee, token = token_of(tenant_a)
    browser = Client(REMOTE_ADDR="203.0.113.7")
    assert browser.get(f"/attendee/{token}/").status_code == 200
    assert browser.get(f"/attendee/{token}/unsubscribe").status_code == 200
    assert browser.get(f"/attendee/{token}/drop-in").status_code == 200
    # when: the same address asks for a new link
    refused = browser.post(f"/attendee/{token}/new-link")
    # then: a 429 problem telling it when to come back, and the link is not replaced
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("rate-limited")
    assert 1 <= int(refused["Retry-After"]) <= 120  # a sliding window of one minute may ask for up to two
    assert link_generation(attendee) == 0
    # and: bad tokens from that address are refused by the budget too (no token work at all)
    assert browser.get("/attendee/garbage/").status_code == 429
    assert browser.post("/attendee/garbage/unsubscribe", {"List-Unsubscribe": "One-Click"}).status_code == 429
    # and: another address still has its own budget
    assert Client(REMOTE_ADDR="198.51.100.9").get(f"/attendee/{token}/").status_code == 200


def test_one_click_unsubscribes_from_a_mail_providers_address_count_per_link(tenant_a: Any, settings: Any) -> None:
    # given: a budget of two requests a minute; a mail provider's server, which sends the
    # one-click unsubscribes of all its users from one address, has spent its address's budget
    settings.ATTENDEE_PAGE_RATE = "2/min"
    _, people = event_with_attendees(tenant_a.org, consenting=3)
    tokens = [attendee_token(tenant_id=tenant_a.org.pk, attendee_id=a.pk) for a in people]
    provider = Client(REMOTE_ADDR="192.0.2.25")
    assert [provider.get(f"/attendee/{t}/unsubscribe").status_code for t in tokens] == [200, 200, 429]
    # when: it sends the one-click unsubscribe of each of the three attendees
    clicks = [provider.post(f"/attendee/{t}/unsubscribe", {"List-Unsubscribe": "One-Click"}) for t in tokens]
    # then: every one is honoured (the budget of a signed link is its own, not the address's)
    assert [c.status_code for c in clicks] == [200, 200, 200]
    assert all(unsubscribed_at(a) is not None for a in people)
    # and: one link's budget still runs out, from any address
    again = Client(REMOTE_ADDR="198.51.100.10").post(f"/attendee/{tokens[0]}/unsubscribe")
    assert again.status_code == 200
    refused = Client(REMOTE_ADDR="198.51.100.11").post(f"/attendee/{tokens[0]}/unsubscribe")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1


def test_one_click_unsubscribes_with_bad_tokens_count_against_the_address(tenant_a: Any, settings: Any) -> None:
    # given: a budget of two requests a minute per address
    settings.ATTENDEE_PAGE_RATE = "2/min"
    flood = Client(REMOTE_ADDR="203.0.113.77")
    # when: an address posts unsubscribes with tokens that are not ours
    statuses = [flood.post(f"/attendee/forged{n}/unsubscribe").status_code for n in range(3)]
    # then: the first two get the invalid link's 404, the third the budget's 429
    assert statuses == [404, 404, 429]


def test_the_budget_follows_the_rate_limit_switch(tenant_a: Any, settings: Any) -> None:
    # given: a budget of one request, and the rate limits switched off
    settings.ATTENDEE_PAGE_RATE = "1/min"
    settings.RATE_LIMIT_ENABLED = False
    _, token = token_of(tenant_a)
    browser = Client(REMOTE_ADDR="203.0.113.8")
    # then: nothing is counted or refused
    assert [browser.get(f"/attendee/{token}/").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize("name", ratelimit.PAGE_RATE_SETTINGS)
def test_a_typo_in_a_page_rate_is_a_system_check_error(settings: Any, name: str) -> None:
    setattr(settings, name, "3 per minute")
    errors = ratelimit.rate_limits_parse()
    assert [(e.id, e.msg.split(":")[0]) for e in errors] == [("ops.E001", f"DARKROOM_{name}")]
