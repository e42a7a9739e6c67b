"""A studio with many events: shoppers page through them newest first, and find theirs by name
without ever seeing a protected event."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from apps.catalog.models import Event
from tests.web.shop.conftest import an_event, url

pytestmark = pytest.mark.django_db


def titles_on(body: str) -> list[str]:
    return re.findall(r'<li><a href="/s/[^"]+/">([^<]+)</a>', body)


@pytest.fixture
def season(tenant_a: Any) -> list[str]:
    """30 public races, one a day from 1 March (titles "Race 01".."Race 30"; 29 and 30 are trail runs),
    and a protected gala that would match every search below."""
    titles = []
    for day in range(1, 31):
        title = f"Race {day:02d}" + (" Trail Run" if day >= 29 else "")
        an_event(tenant_a.org, title=title, slug=f"race-{day:02d}", date=dt.date(2026, 3, day))
        titles.append(title)
    an_event(
        tenant_a.org,
        title="Race Trail Run Gala",
        slug="gala",
        visibility=Event.Visibility.ACCESS_CODE,
        access_code_hash=make_password("gala-2026"),
    )
    return titles


def test_events_come_newest_first_in_pages_of_24(browser: Client, tenant_a: Any, season: list[str]) -> None:
    # when: the shopper opens the studio, then the next page
    first = browser.get(url(tenant_a.org.slug)).content.decode()
    second = browser.get(url(tenant_a.org.slug) + "?page=2").content.decode()
    # then: 24 newest, then the 6 oldest; the protected gala on neither
    assert titles_on(first) == season[::-1][:24]
    assert titles_on(second) == season[::-1][24:]
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    assert "Gala" not in first + second


def test_a_search_finds_public_events_by_title_and_keeps_the_query_across_pages(
    browser: Client, tenant_a: Any, season: list[str]
) -> None:
    # when: the shopper searches in other case and with stray spaces
    body = browser.get(url(tenant_a.org.slug), {"q": "  trail   RUN "}).content.decode()
    # then: the two trail runs, never the protected gala, and the query shown back trimmed
    assert titles_on(body) == ["Race 30 Trail Run", "Race 29 Trail Run"]
    assert "2 events matching “trail RUN”" in body
    assert 'value="trail RUN"' in body
    # and: a broad search pages with the query in its links
    broad = browser.get(url(tenant_a.org.slug), {"q": "race"}).content.decode()
    assert 'href="?q=race&amp;page=2"' in broad and len(titles_on(broad)) == 24


def test_a_search_that_finds_nothing_says_so(browser: Client, tenant_a: Any, season: list[str]) -> None:
    body = browser.get(url(tenant_a.org.slug), {"q": "Gala"}).content.decode()
    assert titles_on(body) == []
    assert "No public event matches “Gala”" in body


def test_the_query_is_escaped_and_bounded(browser: Client, tenant_a: Any, season: list[str]) -> None:
    # when: markup, and a query far longer than a title
    marked = browser.get(url(tenant_a.org.slug), {"q": '<script>alert("x")</script>'}).content.decode()
    long = browser.get(url(tenant_a.org.slug), {"q": "x" * 5000})
    # then: shown as text, and the long one cut to 100 characters, not an error
    assert "<script>alert" not in marked and "&lt;script&gt;alert" in marked
    assert long.status_code == 200 and f'value="{"x" * 100}"' in long.content.decode()


def test_a_search_with_control_characters_matches_as_if_they_were_spaces(
    browser: Client, tenant_a: Any, season: list[str]
) -> None:
    # when: the query holds a NUL (which PostgreSQL text refuses) and other control characters
    response = browser.get(url(tenant_a.org.slug), {"q": "trail\x00run\x07"})
    # then: the page answers, matching "trail run"
    assert response.status_code == 200
    assert titles_on(response.content.decode()) == ["Race 30 Trail Run", "Race 29 Trail Run"]
    # and: a query of nothing but control characters lists every event, as an empty one does
    assert browser.get(url(tenant_a.org.slug), {"q": "\x00\x00"}).status_code == 200
