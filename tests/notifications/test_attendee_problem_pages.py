"""Refusals of the attendee's signed-link pages are an HTML page with the same status for a
browser, and stay RFC 7807 problems for every other client (mail clients, scripts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import tenant_context
from tests.fixtures import forget_rate_limit_windows
from tests.notifications.helpers import event_with_attendees

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    forget_rate_limit_windows("attendee:page:")
    yield
    forget_rate_limit_windows("attendee:page:")


def test_a_mangled_attendee_link_is_a_404_page_in_a_browser_and_a_problem_elsewhere(tenant_a: Any) -> None:
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    mangled = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)[:-3] + "xyz"
    # when: a browser opens it
    page = Client().get(f"/attendee/{mangled}/", **BROWSER)
    # then: a page saying so, with the status kept
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert "This link is not valid." in page.content.decode()
    # and: a client that does not ask for HTML still gets the problem
    api = Client().get(f"/attendee/{mangled}/unsubscribe")
    assert api.status_code == 404 and api["Content-Type"] == "application/problem+json"


# Every signed attendee URL: (method, path after /attendee/<token>, form data).
ATTENDEE_URLS = [
    ("get", "/", None),  # inbox
    ("post", "/read", {"notification": "1"}),  # mark read
    ("get", "/unsubscribe", None),  # unsubscribe confirmation
    ("post", "/unsubscribe", {"List-Unsubscribe": "One-Click"}),  # unsubscribe (also mail clients' one-click)
    ("post", "/new-link", {}),  # replace the link, e-mail the new one
    ("post", "/resubscribe", {}),  # announcements by e-mail again
    ("get", "/drop-in", None),  # drop-in page
    ("post", "/drop-in", {"consent": "yes"}),  # selfie
    ("post", "/drop-in/delete", {}),  # delete the face
    ("post", "/drop-in/alerts", {"alerts": "off"}),  # photo alerts toggle
]


def _open(client: Client, method: str, url: str, data: dict[str, str] | None, **headers: str) -> Any:
    return client.get(url, **headers) if method == "get" else client.post(url, data or {}, **headers)


@pytest.mark.parametrize(("method", "page", "data"), ATTENDEE_URLS)
@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-3] + "xyz",  # the signature changed
        lambda token: token[:20],  # cut where a mail client wrapped the line
        lambda token: token.replace(":", ""),  # no signature at all
        lambda token: "eyJ0IjoxLCJhIjoyfQ" + token[token.index(":") :],  # another attendee, same signature
    ],
    ids=["tampered", "truncated", "unsigned", "forged-payload"],
)
def test_every_attendee_url_answers_a_bad_link_with_a_page_in_a_browser_and_a_problem_elsewhere(
    tenant_a: Any, method: str, page: str, data: dict[str, str] | None, mangle: Any
) -> None:
    # given: an attendee's link, mangled
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    url = f"/attendee/{mangle(attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk))}{page}"
    # when: a browser opens it, and a client that does not ask for HTML does
    shown = _open(Client(), method, url, data, **BROWSER)
    answered = _open(Client(), method, url, data)
    # then: the browser gets a 404 page saying so; the other client the 404 problem
    assert (shown.status_code, shown["Content-Type"]) == (404, "text/html; charset=utf-8")
    assert "This link is not valid." in shown.content.decode()
    assert (answered.status_code, answered["Content-Type"]) == (404, "application/problem+json")
    assert answered.json()["type"] == "/problems/attendee-link-invalid"
    # and: nothing changed for the attendee (nor their link)
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.filter(pk=people[0].pk, unsubscribed_at__isnull=True, link_generation=0).exists()


# The unsubscribe POST counts against its signed link, not the address (test_attendee_page_limit.py).
ADDRESS_BUDGET_URLS = [url for url in ATTENDEE_URLS if url[:2] != ("post", "/unsubscribe")]


@pytest.mark.parametrize(("method", "page", "data"), ADDRESS_BUDGET_URLS)
def test_every_attendee_url_over_the_budget_is_a_429_page_in_a_browser(
    tenant_a: Any, settings: Any, method: str, page: str, data: dict[str, str] | None
) -> None:
    # given: a budget of one attendee page a minute, spent
    settings.RATE_LIMIT_ENABLED = True
    settings.ATTENDEE_PAGE_RATE = "1/min"
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    url = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)}{page}"
    browser = Client(REMOTE_ADDR="203.0.113.22")
    browser.get(url.removesuffix(page) + "/", **BROWSER)
    # when: the browser opens the URL
    refused = _open(browser, method, url, data, **BROWSER)
    # then: a 429 page with Retry-After, and the attendee (and their link) unchanged
    assert (refused.status_code, refused["Content-Type"]) == (429, "text/html; charset=utf-8")
    assert int(refused["Retry-After"]) >= 1
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.filter(pk=people[0].pk, unsubscribed_at__isnull=True, link_generation=0).exists()


def test_over_the_attendee_budget_a_browser_gets_a_429_page_with_retry_after(tenant_a: Any, settings: Any) -> None:
    settings.RATE_LIMIT_ENABLED = True
    settings.ATTENDEE_PAGE_RATE = "1/min"
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)
    browser = Client(REMOTE_ADDR="203.0.113.21")
    assert browser.get(f"/attendee/{token}/", **BROWSER).status_code == 200
    # when: the next page is over the budget
    refused = browser.get(f"/attendee/{token}/", **BROWSER)
    # then: an HTML 429 telling when to come back
    assert refused.status_code == 429 and refused["Content-Type"].startswith("text/html")
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 120  # a sliding window of one minute may ask for up to two
    assert f"try again in {wait} second" in refused.content.decode()


def test_a_mark_read_with_a_bad_id_is_a_400_page_and_changes_nothing(tenant_a: Any) -> None:
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)
    page = Client().post(f"/attendee/{token}/read", {"notification": "drop table"}, **BROWSER)
    assert page.status_code == 400 and "must be a notification id" in page.content.decode()
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.filter(pk=people[0].pk).exists()
