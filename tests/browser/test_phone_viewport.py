"""The shop on a phone: the pages shoppers and attendees open at an event, in Debian's Chromium
emulating a phone (touch, a mobile user agent, device scale 3, the viewport meta tag in force) at
390x844 and at 320x640, against the live server.

Each page is checked for what a phone user meets:

* a viewport meta tag (`width=device-width`, zoom not blocked), and no sideways scrolling: the
  layout viewport stays the phone's width (a mobile browser widens it, zooming the page out, when
  content is wider) and the page is no wider than it;
* tap targets (links, buttons, fields) at least 24x24 CSS px (WCAG 2.2 SC 2.5.8), except links
  inside a sentence; none, and no table cell, hidden in a box that scrolls sideways (an "Add to
  cart" or "Remove" button out of sight in a table) or overlapping another;
* text fields and selects with a font of at least 16 px (else iOS Safari zooms in on focus);
* the fields' `type`, `autocomplete` and `accept` tokens, so phone keyboards, autofill
  and the photo chooser work (`FIELDS` below);
* images with `width`, `height` (no layout shift while they load) and alt text, and the gallery
  in at least two columns.

Every studio page the accessibility test opens (sign-in, password reset, the invitations page,
choosing a studio, and the dashboard signed in) is checked the same way at both sizes: its tables
of items stack into labelled rows like the shop's, so no figure or button is out of sight.

Run them alone: `pytest tests/browser/test_phone_viewport.py` (under a minute).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect
from pytest_django.live_server_helper import LiveServer

from apps.catalog.models import Event
from tests.browser.conftest import TIMEOUT_MS
from tests.browser.test_accessibility import PAGES as A11Y_PAGES
from tests.browser.test_accessibility import World, pay
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import drain_outbox
from tests.factories.catalog import PhotoFactory
from tests.factories.commerce import Shop
from tests.fixtures import TenantBundle
from tests.web.shop.conftest import ACCESS_CODE, checkouts_of, make_ready
from tests.web.shop.test_checkout import checkout_form, submit
from tests.web.studio.conftest import StudioPeople

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.usefixtures("empty_broker"),
]

PHONE = ViewportSize(width=390, height=844)
SMALL_PHONE = ViewportSize(width=320, height=640)
MOBILE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
MIN_TARGET_PX = 24
MIN_FIELD_FONT_PX = 16
# A link with at least this much text of its own block around it is "in a sentence".
SENTENCE_CHARS = 20

_CHECKS_JS = """([minTarget, minFont, sentenceChars]) => {
  const describe = el => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.getAttribute('name')) s += `[name="${el.getAttribute('name')}"]`;
    const text = (el.getAttribute('aria-label') || el.textContent || el.value || '').replace(/\\s+/g, ' ').trim();
    return text ? `${s} "${text.slice(0, 50)}"` : s;
  };
  const px = r => `${Math.round(r.width)}x${Math.round(r.height)}`;
  const problems = [];
  const vw = window.innerWidth;

  const meta = document.querySelector('meta[name="viewport"]');
  const content = meta ? meta.content.replace(/\\s+/g, '') : '';
  if (!/(^|,)width=device-width(,|$)/.test(content)) {
    problems.push(`viewport meta tag is ${JSON.stringify(content || null)}`);
  }
  if (/user-scalable=(no|0)|maximum-scale=1(\\.0*)?(,|$)/.test(content)) {
    problems.push(`viewport meta tag blocks zooming: ${content}`);
  }
  const root = document.documentElement;
  if (root.scrollWidth > vw) {
    problems.push(`scrolls sideways: the page is ${root.scrollWidth} px wide in a ${vw} px viewport`);
  }

  const targets = Array.from(document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary'
  )).filter(el => {
    const r = el.getBoundingClientRect();
    // Not rendered (in a closed <details> too), or off-screen until focused (the skip link).
    return r.width > 0 && r.height > 0 && r.right > 0 && el.checkVisibility({visibilityProperty: true});
  });
  const isTarget = node => targets.includes(node);
  const blockOf = el => {
    let node = el.parentElement;
    while (node && getComputedStyle(node).display.startsWith('inline')) node = node.parentElement;
    return node || document.body;
  };
  // The text of the link's block outside any target: a link in a sentence has some around it.
  const inSentence = el => {
    if (el.tagName !== 'A' || getComputedStyle(el).display !== 'inline') return false;
    const block = blockOf(el);
    const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
    let own = '';
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      let inside = false;
      for (let p = node.parentElement; p && p !== block; p = p.parentElement) if (isTarget(p)) { inside = true; break; }
      if (!inside) own += node.textContent;
    }
    return own.replace(/\\s+/g, ' ').trim().length >= sentenceChars;
  };

  // Out of sight: outside the viewport, or in a box that scrolls sideways and hides it.
  const hidden = (el, what) => {
    const r = el.getBoundingClientRect();
    if (r.left < -1 || r.right > vw + 1) return `${what} ${describe(el)} is outside the viewport`;
    for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
      if (getComputedStyle(box).overflowX === 'visible') continue;
      const b = box.getBoundingClientRect();
      if (r.left < b.left - 1 || r.right > b.right + 1) {
        return `${what} ${describe(el)} is cut off by ${describe(box)} (scrolled out of sight)`;
      }
    }
    return null;
  };
  for (const el of targets) {
    const r = el.getBoundingClientRect();
    if ((r.width < minTarget || r.height < minTarget) && !inSentence(el)) {
      problems.push(`tap target ${describe(el)} is ${px(r)} CSS px (at least ${minTarget}x${minTarget})`);
    }
    const out = hidden(el, 'tap target');
    if (out) problems.push(out);
  }
  // Cells shown (not in a visually hidden header row: 1 px, clipped).
  const shown = el => !el.closest('thead') || el.closest('thead').getBoundingClientRect().height > 1;
  for (const cell of document.querySelectorAll('main th, main td')) {
    const out = cell.getBoundingClientRect().width > 0 && shown(cell) && hidden(cell, 'table cell');
    if (out) problems.push(out);
  }
  for (let i = 0; i < targets.length; i++) {
    for (let j = i + 1; j < targets.length; j++) {
      const [a, b] = [targets[i], targets[j]];
      if (a.contains(b) || b.contains(a)) continue;
      const [ra, rb] = [a.getBoundingClientRect(), b.getBoundingClientRect()];
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) problems.push(`tap targets overlap: ${describe(a)} and ${describe(b)}`);
    }
  }

  const notText = ['checkbox', 'radio', 'file', 'submit', 'button', 'reset', 'image', 'range', 'color'];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (el.tagName === 'INPUT' && notText.includes(el.type)) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < minFont) problems.push(`field ${describe(el)} has a ${size}px font: iOS zooms in when it is focused`);
  }

  for (const img of document.querySelectorAll('main img')) {
    const name = img.getAttribute('src');
    for (const attr of ['width', 'height']) {
      if (!(parseInt(img.getAttribute(attr), 10) > 0)) problems.push(`image ${name} has no ${attr} attribute`);
    }
    if (!(img.getAttribute('alt') || '').trim()) problems.push(`image ${name} has no alt text`);
  }
  for (const grid of document.querySelectorAll('ul.grid')) {
    const columns = getComputedStyle(grid).gridTemplateColumns.split(' ').filter(Boolean).length;
    if (columns < 2) problems.push(`the photo grid shows ${columns} column at ${vw} px`);
  }
  return {width: vw, problems};
}"""


# The attributes fields must carry (a set: any of these values), by CSS selector, per page.
EMAIL = {"type": "email", "autocomplete": "email"}
# No `capture`: it would open the camera alone on phones, hiding the selfies already in the
# photo library (the accept list still offers the camera in the chooser).
SELFIE = {"type": "file", "accept": {"image/*", "image/jpeg,image/png,image/webp"}}
FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "studio": {"#event-q": {"type": "search"}},
    "access-code": {
        "#code": {
            "type": "text",
            "autocomplete": "off",
            "autocapitalize": {"off", "none"},
            "autocorrect": "off",
            "spellcheck": "false",
        }
    },
    "cart": {
        "#email": EMAIL,
        "#shipping_name": {"type": "text", "autocomplete": "shipping name"},
        "#shipping_line1": {"type": "text", "autocomplete": "shipping address-line1"},
        "#shipping_line2": {"type": "text", "autocomplete": "shipping address-line2"},
        "#shipping_city": {"type": "text", "autocomplete": "shipping address-level2"},
        "#shipping_postal_code": {"type": "text", "autocomplete": "shipping postal-code"},
        "#shipping_region": {"type": "text", "autocomplete": "shipping address-level1"},
        "#shipping_country": {"autocomplete": "shipping country"},
        "#shipping_phone": {"type": "tel", "autocomplete": "shipping tel"},
    },
    "orders": {"#email": EMAIL},
    "find-me": {"#image": SELFIE},
    "attendee-drop-in": {'input[name="image"]': SELFIE},
}


def field_problems(page: Page, expected: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for selector, attributes in expected.items():
        field = page.locator(selector)
        if field.count() != 1:
            problems.append(f"expected one field {selector}, found {field.count()}")
            continue
        for name, want in attributes.items():
            found = field.get_attribute(name)
            allowed = want if isinstance(want, set) else {want}
            if found not in allowed:
                problems.append(f"field {selector}: {name}={found!r}, expected {' or '.join(sorted(allowed))}")
    return problems


# --- the pages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """How to open a page (`open` leaves the browser on it) and the level-one heading it shows."""

    open: Callable[[World], None]
    heading: str | re.Pattern[str]


def at(path: Callable[[World], str]) -> Callable[[World], None]:
    def open_page(w: World) -> None:
        address = path(w)
        w.goto(address)

    return open_page


def _unlocked_gallery(w: World) -> None:
    w.goto(f"/s/{w.slug}/{w.protected_event.slug}/")
    w.page.get_by_label("Access code").fill(ACCESS_CODE)
    w.page.get_by_role("button", name="See the photos").click()
    expect(w.page.get_by_role("link", name=re.compile(r"^Photo \d+$"))).to_have_count(1)


def _order(w: World, *lines: tuple[Any, int], then: Callable[[str], None] | None = None) -> str:
    """An order of `lines` placed through the cart page's form by a new shopper (the browser
    takes their session), its sandbox session opened; `then(checkout_id)` runs next (its
    messages consumed too). Returns the order page's path."""
    before = {checkout.pk for checkout in checkouts_of(w.tenant.org.pk)}
    client = w.shopper(*lines)
    assert submit(client, w.tenant, checkout_form(client, w.tenant)).status_code == 303
    [checkout] = [c for c in checkouts_of(w.tenant.org.pk) if c.pk not in before]
    drain_outbox()
    if then is not None:
        then(str(checkout.pk))
        drain_outbox()
    return w.order_path(str(checkout.pk))


def _cart_with_a_print(w: World) -> str:
    w.shopper((w.shop.download, 1), (w.shop.print, 2))
    return f"/s/{w.slug}/cart/"


PAGES: dict[str, Visit] = {
    "studio": Visit(at(lambda w: f"/s/{w.slug}/"), "Events"),
    "gallery": Visit(at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/"), re.compile(r"\S")),
    "access-code": Visit(at(lambda w: f"/s/{w.slug}/{w.protected_event.slug}/"), "Private Gala"),
    "gallery-unlocked": Visit(_unlocked_gallery, "Private Gala"),
    "photo": Visit(
        at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/photos/{w.shop.photo.pk}/"), re.compile(r"^Photo \d+$")
    ),
    "cart": Visit(at(_cart_with_a_print), "Your cart"),
    "order": Visit(at(lambda w: _order(w, (w.shop.download, 1), (w.shop.print, 1))), "Your order"),
    # The provider's page of the order placed just before.
    "sandbox-pay": Visit(at(lambda w: f"/sandbox/pay/{checkouts_of(w.tenant.org.pk)[-1].pk}"), re.compile(r"^Pay ")),
    "order-paid": Visit(at(lambda w: _order(w, (w.shop.download, 1), then=pay)), "Your order"),
    "orders": Visit(at(lambda w: f"/s/{w.slug}/orders/"), "Find my orders"),
    "find-me": Visit(at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/find-me"), re.compile("^Find me in ")),
    "attendee-inbox": Visit(at(lambda w: w.attendee_path), re.compile(": ")),
    "attendee-drop-in": Visit(at(lambda w: f"{w.attendee_path}drop-in"), re.compile("^New photos of you: ")),
}


@pytest.fixture
def phone(chromium: Browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A phone's browser: touch, a mobile user agent, device scale 3, and a layout viewport that
    follows the page's viewport meta tag (and widens when the content is wider)."""
    viewport: ViewportSize = request.param
    context = chromium.new_context(
        base_url=live_server.url,
        viewport=viewport,
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
        user_agent=MOBILE_SAFARI,
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("phone", [PHONE, SMALL_PHONE], ids=["390x844", "320x640"], indirect=True)
def test_the_shop_works_on_a_phone(
    phone: Page,
    live_server: LiveServer,
    tenant_a: TenantBundle,
    shop: Shop,
    studio: StudioPeople,
    protected_event: Event,
) -> None:
    # given: a gallery of a few photos, and a phone
    for _ in range(3):
        make_ready(PhotoFactory(event=shop.event, image_width=3000, image_height=2000))
    world = World(
        page=phone, server=live_server, tenant=tenant_a, shop=shop, studio=studio, protected_event=protected_event
    )
    width = phone.viewport_size["width"] if phone.viewport_size else 0
    problems: list[str] = []
    for page_id, visit in PAGES.items():
        # when: the shopper opens the page
        visit.open(world)
        phone.wait_for_load_state("load")
        expect(phone.get_by_role("heading", level=1)).to_have_text(visit.heading)
        # then: it fits the phone, and its targets, fields and images work there
        found = phone.evaluate(_CHECKS_JS, [MIN_TARGET_PX, MIN_FIELD_FONT_PX, SENTENCE_CHARS])
        page_problems = list(found["problems"])
        if found["width"] != width:
            page_problems.insert(
                0, f"the browser widened the layout viewport to {found['width']} px (content wider than the phone)"
            )
        page_problems += field_problems(phone, FIELDS.get(page_id, {}))
        problems += [f"{page_id}: {problem}" for problem in page_problems]
    assert not problems, f"at {width} px, {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)


# --- the studio dashboard ---------------------------------------------------------------------

STUDIO_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "studio-login": {
        "#id_username": {"autocomplete": "username", "autocapitalize": "none"},
        "#id_password": {"type": "password", "autocomplete": "current-password"},
    },
    # An access code is compared as typed: a phone keyboard must not capitalise or correct it.
    "studio-events": {
        "#event_slug": {"autocapitalize": "none", "autocorrect": "off", "spellcheck": "false"},
        "#event_access_code": {
            "autocomplete": "off",
            "autocapitalize": "none",
            "autocorrect": "off",
            "spellcheck": "false",
        },
    },
    "studio-event": {
        "#upload_images": {"type": "file", "accept": "image/jpeg,image/png,image/webp", "multiple": ""},
        "#eventedit_access_code": {
            "autocomplete": "off",
            "autocapitalize": "none",
            "autocorrect": "off",
            "spellcheck": "false",
        },
    },
}


@pytest.mark.parametrize("phone", [PHONE, SMALL_PHONE], ids=["390x844", "320x640"], indirect=True)
def test_every_studio_page_works_on_a_phone(
    phone: Page,
    live_server: LiveServer,
    tenant_a: TenantBundle,
    shop: Shop,
    studio: StudioPeople,
    protected_event: Event,
) -> None:
    """Every studio page the accessibility test opens, in the state people meet it in (sign-in,
    password reset, the invitations page, a paid sale, a pending invitation, a credited
    photographer's wallet, ...), is checked as the shop's pages are: a studio owner on a phone
    reaches and presses every action without scrolling sideways, in the page or in a table's box."""
    # given: a phone
    world = World(
        page=phone, server=live_server, tenant=tenant_a, shop=shop, studio=studio, protected_event=protected_event
    )
    width = phone.viewport_size["width"] if phone.viewport_size else 0
    pages = {page_id: visit for page_id, visit in A11Y_PAGES.items() if page_id.startswith("studio-")}
    assert set(STUDIO_FIELDS) <= set(pages), "the pages whose fields are checked are among the accessibility test's"
    problems: list[str] = []
    for page_id, visit in pages.items():
        # when: the page opens
        response = visit.open(world)
        assert response.status == visit.status, f"{page_id}: {response.url} answered {response.status}"
        phone.wait_for_load_state("load")
        expect(phone.get_by_role("heading", level=1)).to_have_text(visit.heading)
        # then: it fits the phone, and its targets, cells and fields work there
        found = phone.evaluate(_CHECKS_JS, [MIN_TARGET_PX, MIN_FIELD_FONT_PX, SENTENCE_CHARS])
        page_problems = list(found["problems"])
        if found["width"] != width:
            page_problems.insert(
                0, f"the browser widened the layout viewport to {found['width']} px (content wider than the phone)"
            )
        page_problems += field_problems(phone, STUDIO_FIELDS.get(page_id, {}))
        problems += [f"{page_id}: {problem}" for problem in page_problems]
    assert not problems, f"at {width} px, {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
