"""The attendee's signed-link pages share one request budget per client address
(`ATTENDEE_PAGE_RATE`): over it they answer a 429 problem with `Retry-After` and write nothing,
while other addresses keep theirs."""

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


def test_over_the_budget_the_pages_answer_429_and_a_one_click_unsubscribe_writes_nothing(
    tenant_a: Any, settings: Any
) -> None:
    # given: a budget of three requests a minute per address, spent on the inbox, the
    # unsubscribe page and the drop-in page
    settings.ATTENDEE_PAGE_RATE = "3/min"
    attendee, token = token_of(tenant_a)
    browser = Client(REMOTE_ADDR="203.0.113.7")
    assert browser.get(f"/attendee/{token}/").status_code == 200
    assert browser.get(f"/attendee/{token}/unsubscribe").status_code == 200
    assert browser.get(f"/attendee/{token}/drop-in").status_code == 200
    # when: the same address sends a one-click unsubscribe
    refused = browser.post(f"/attendee/{token}/unsubscribe", {"List-Unsubscribe": "One-Click"})
    # then: a 429 problem telling it when to come back, and the attendee is still subscribed
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("rate-limited")
    assert 1 <= int(refused["Retry-After"]) <= 120  # a sliding window of one minute may ask for up to two
    assert unsubscribed_at(attendee) is None
    # and: bad tokens from that address are refused by the budget too (no token work at all)
    assert browser.get("/attendee/garbage/").status_code == 429
    # and: another address still has its own budget, and its unsubscribe works
    other = Client(REMOTE_ADDR="198.51.100.9")
    assert other.post(f"/attendee/{token}/unsubscribe", {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert unsubscribed_at(attendee) is not None


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
