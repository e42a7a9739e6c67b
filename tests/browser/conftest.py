"""Browser tests: Debian's Chromium, driven through Playwright's sync API, against pytest-django's
live server (a real HTTP server in a thread of this process, on this run's test database and
Redis namespace, serving the static files such as htmx from the apps' static folders).

Chromium comes from Debian (`/usr/bin/chromium`, `make browser`), never from `playwright install`.
Without it the tests fail when `CI` is set and are skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from tests.fixtures import require_executable

# The shop and studio pages' own fixtures, used by name: a priced shop whose photo is ready, a
# protected event, and a studio with an owner, a photographer and a staff member.
from tests.web.conftest import _fresh_web_rate_limits  # noqa: F401 - autouse: the pages' limiter windows
from tests.web.shop.conftest import protected_event, shop  # noqa: F401
from tests.web.studio.conftest import studio  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
# The box is shared and loaded: every wait (navigation, locator, expect) gets a minute.
TIMEOUT_MS = 60_000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """A headless Chromium for one test.

    Playwright's sync API keeps an asyncio loop marked as running in this thread while it is
    started, so Django's ORM (used by the test's own set-up and assertions, never by the server
    threads, which have no loop) would refuse with SynchronousOnlyOperation: allow it for this
    test only. Playwright is started per test so the flag and the loop end with the test.
    """
    require_executable(CHROMIUM, "install Debian's Chromium with `make browser` (`playwright install` is not used)")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser, live_server: LiveServer) -> Iterator[Page]:
    """A fresh browser profile (cookies, session) on the live server; relative URLs resolve
    against it."""
    context = chromium.new_context(base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
