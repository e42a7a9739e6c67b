"""Accessibility (WCAG 2.1, levels A and AA) of the pages shoppers, attendees and studio people
meet, in Debian's Chromium against the live server, with the Content-Security-Policy in force.

Each page (one test id per page) is opened in the state a person meets it in (a cart with a print,
an order awaiting payment, a paid sale with its refund and shipping forms, ...) and checked with:

* axe-core (the `axe-playwright-python` package, which bundles it) at a desktop size and at a
  phone size, limited to the WCAG 2.0/2.1 A and AA rules; a violation of impact serious or
  critical fails the test, which names each rule, its help text and the offending elements;
* what axe does not judge: every form control has a name from its label, `aria-label` or
  `aria-labelledby` (axe also accepts a `title` or a placeholder), every `aria-labelledby`,
  `aria-describedby` and `<label for>` names an element that exists, the page has one `main`
  landmark and the expected level-one heading;
* for the pages shoppers and attendees open on their phones: no horizontal scrolling at 320 CSS
  pixels wide (WCAG 1.4.10 Reflow: a 1280 px window at 400 %, or a 640 px one at 200 %).

A second set sends forms the server refuses and checks that every field marked invalid points to
its message with `aria-describedby` and that the message is announced (`role="alert"` or a live
region), then runs axe on the refused page.

Run them alone: `pytest tests/browser/test_accessibility.py -n 2` (about 2 min on two cores).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from playwright.sync_api import Page, Response, ViewportSize, expect
from pytest_django.live_server_helper import LiveServer

from apps.catalog.models import Event
from apps.commerce.models import Checkout, CheckoutLine
from apps.commerce.services.payment import _record_payment_error
from apps.dropin.faces.fake import fake_face_image
from apps.notifications.models import Attendee, Notification
from apps.notifications.selectors import attendee_token
from apps.notifications.services import AttendeeIn, announcement_create, attendees_register
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, Organization, User
from apps.tenancy.services import member_invite
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid, sandbox_provider
from tests.commerce.refunds import ask, confirmed, fresh
from tests.factories.commerce import Shop
from tests.factories.tenancy import OrganizationFactory
from tests.fixtures import TenantBundle
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit
from tests.web.studio.conftest import StudioPeople, new_member, new_user, sold

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.usefixtures("empty_broker"),
]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = {"serious", "critical"}
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
# WCAG 1.4.10 Reflow: content fits 320 CSS px without scrolling in two directions.
NARROW = ViewportSize(width=320, height=640)

AXE = Axe()
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}


# --- the checks ------------------------------------------------------------------------------

_DESCRIBE_JS = """
const describe = el => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  if (el.getAttribute('name')) s += `[name="${el.getAttribute('name')}"]`;
  if (el.getAttribute('type')) s += `[type="${el.getAttribute('type')}"]`;
  if (el.className && typeof el.className === 'string') s += '.' + el.className.trim().split(/\\s+/).join('.');
  const text = (el.textContent || '').replace(/\\s+/g, ' ').trim();
  return text ? `${s} "${text.slice(0, 60)}"` : s;
};
const text = el => (el ? (el.textContent || '').replace(/\\s+/g, ' ').trim() : '');
const byIds = value => (value || '').split(/\\s+/).filter(Boolean).map(id => document.getElementById(id));
"""

# Controls without a name from a label, aria-label or aria-labelledby (a button may be named by
# its text); references (aria-labelledby, aria-describedby, label[for]) to ids that do not exist;
# and the page's main landmarks and level-one headings.
_STRUCTURE_JS = (
    "() => {"
    + _DESCRIBE_JS
    + """
  const unnamed = [];
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (el.type === 'hidden') continue;
    let name = byIds(el.getAttribute('aria-labelledby')).map(text).join(' ').trim();
    if (!name) name = (el.getAttribute('aria-label') || '').trim();
    if (!name && el.labels) name = Array.from(el.labels).map(text).join(' ').trim();
    if (!name && el.tagName === 'BUTTON') name = text(el);
    const isInputButton = el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type);
    if (!name && isInputButton) name = (el.value || '').trim();
    if (!name) unnamed.push(describe(el));
  }
  const dangling = [];
  for (const attr of ['aria-labelledby', 'aria-describedby']) {
    for (const el of document.querySelectorAll(`[${attr}]`)) {
      for (const id of el.getAttribute(attr).split(/\\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) dangling.push(`${describe(el)}: ${attr} names #${id}, which does not exist`);
      }
    }
  }
  for (const label of document.querySelectorAll('label[for]')) {
    if (document.getElementById(label.htmlFor)) continue;
    dangling.push(`${describe(label)}: for="${label.htmlFor}" names no element`);
  }
  const mains = document.querySelectorAll('main, [role="main"]').length;
  const h1 = Array.from(document.querySelectorAll('h1')).map(text);
  return {unnamed, dangling, mains, h1};
}"""
)

# The outermost elements sticking out to the right of the viewport (what makes the page scroll).
_OVERFLOW_JS = (
    "() => {"
    + _DESCRIBE_JS
    + """
  const root = document.scrollingElement;
  const width = root.clientWidth;
  const wide = el => el.getBoundingClientRect().right > width + 1;
  const culprits = Array.from(document.body.querySelectorAll('*'))
    .filter(el => wide(el) && !(el.parentElement && el.parentElement !== document.body && wide(el.parentElement)))
    .map(el => `${describe(el)} reaches ${Math.round(el.getBoundingClientRect().right)}px`);
  return {scrollWidth: root.scrollWidth, clientWidth: width, culprits: culprits.slice(0, 8)};
}"""
)

# Fields marked invalid and whether their message is tied to them and announced.
_INVALID_FIELDS_JS = (
    "() => {"
    + _DESCRIBE_JS
    + """
  const live = '[role="alert"], [role="status"], [aria-live="assertive"], [aria-live="polite"]';
  const announced = el => !!el.closest(live);
  return Array.from(document.querySelectorAll('[aria-invalid="true"]')).map(el => {
    const messages = byIds(el.getAttribute('aria-describedby')).filter(m => m && text(m));
    const inLabel = Array.from(el.labels || [])
      .flatMap(l => Array.from(l.querySelectorAll('[role="alert"]')))
      .filter(m => text(m));
    const tied = messages.concat(inLabel);
    return {
      field: el.getAttribute('name') || describe(el),
      described: tied.map(text),
      announced: tied.some(announced),
    };
  });
}"""
)


def axe_problems(page: Page, where: str) -> list[str]:
    """The WCAG A/AA violations of impact serious or critical axe finds on the page as shown."""
    results = AXE.run(page, options=AXE_OPTIONS)
    problems = []
    for violation in results.response["violations"]:
        if violation["impact"] not in BLOCKING_IMPACTS:
            continue
        targets = [" ".join(str(part) for part in node["target"]) for node in violation["nodes"]]
        problems.append(
            f"axe {where}: {violation['id']} ({violation['impact']}): {violation['help']} "
            f"<{violation['helpUrl']}>\n      on: " + "\n          ".join(targets)
        )
    return problems


def structure_problems(page: Page, heading: str | re.Pattern[str]) -> list[str]:
    found = page.evaluate(_STRUCTURE_JS)
    problems = [f"control without a label, aria-label or aria-labelledby: {c}" for c in found["unnamed"]]
    problems += [f"broken reference: {d}" for d in found["dangling"]]
    if found["mains"] != 1:
        problems.append(f"the page has {found['mains']} main landmarks, not one")
    matches = [h for h in found["h1"] if (heading.search(h) if isinstance(heading, re.Pattern) else h == heading)]
    if len(found["h1"]) != 1 or not matches:
        problems.append(f"expected one h1 {heading!r}, found {found['h1']!r}")
    return problems


def reflow_problems(page: Page) -> list[str]:
    page.set_viewport_size(NARROW)
    found = page.evaluate(_OVERFLOW_JS)
    if found["scrollWidth"] <= found["clientWidth"] + 1:
        return []
    return [
        f"scrolls sideways at {NARROW['width']} px: {found['scrollWidth']} px wide in a {found['clientWidth']} px "
        "viewport, because of:\n      " + "\n      ".join(found["culprits"])
    ]


def report(page_id: str, problems: list[str]) -> str:
    return f"{page_id}: {len(problems)} accessibility problem(s)\n  - " + "\n  - ".join(problems)


# --- the pages, in the state people meet them ------------------------------------------------


@dataclass
class World:
    """A studio with a priced shop, a protected event and its people, and the browser. The
    expensive states (a paid sale, an order at the sandbox) are built when a page needs them."""

    page: Page
    server: LiveServer
    tenant: TenantBundle
    shop: Shop
    studio: StudioPeople
    protected_event: Event

    @property
    def slug(self) -> str:
        return self.tenant.org.slug

    def goto(self, path: str) -> Response:
        response = self.page.goto(path)
        assert response is not None, path
        return response

    def take_session(self, client: Client) -> None:
        """The Django test client's session (a cart, an order, a sign-in) in the browser."""
        self.page.context.add_cookies(
            [{"name": name, "value": morsel.value, "url": self.server.url} for name, morsel in client.cookies.items()]
        )

    def shopper(self, *lines: tuple[Any, int]) -> Client:
        """A shopper whose cart holds `lines` (product, quantity), their session in the browser."""
        client = Client()
        for product, quantity in lines:
            add(client, self.tenant, self.shop, product, quantity)
        self.take_session(client)
        return client

    def signed_in(self, user: User) -> None:
        client = Client()
        client.force_login(user)
        self.take_session(client)

    def order(self, *lines: tuple[Any, int], then: Callable[[str], None] | None = None) -> str:
        """A checkout of `lines` placed through the cart page's form, its stock decided and its
        sandbox session opened (outbox consumers run here); `then(checkout_id)` runs before the
        messages it causes are consumed. Returns the checkout's id."""
        client = self.shopper(*lines)
        response = submit(client, self.tenant, checkout_form(client, self.tenant))
        assert response.status_code == 303, response.content.decode()
        [checkout] = checkouts_of(self.tenant.org.pk)
        drain_outbox()
        if then is not None:
            then(str(checkout.pk))
            drain_outbox()
        return str(checkout.pk)

    def order_path(self, checkout_id: str) -> str:
        return f"/s/{self.slug}/checkouts/{checkout_id}/"

    @cached_property
    def attendee(self) -> Attendee:
        """An attendee of the shop's event who agreed to e-mail, with one unread announcement."""
        org = self.tenant.org
        with tenant_context(org.pk):
            attendees_register(
                tenant=org,
                event_id=self.shop.event.pk,
                attendees=[AttendeeIn(email="ann@example.com", name="Ann", email_consent=True)],
                actor_label="test",
            )
            attendee = Attendee.objects.get(event=self.shop.event, email="ann@example.com")
            Notification.objects.create(
                tenant=org,
                attendee=attendee,
                kind=Notification.Kind.ANNOUNCEMENT,
                dedupe_key="a11y",
                title="Your photos are online",
                body="Find yourself in the gallery.",
                link=f"/s/{self.slug}/{self.shop.event.slug}/",
                created_at=timezone.now(),
            )
        return attendee

    @property
    def attendee_path(self) -> str:
        return f"/attendee/{attendee_token(tenant_id=self.tenant.org.pk, attendee_id=self.attendee.pk)}/"

    @cached_property
    def paid_sale(self) -> str:
        """A paid sale of the download and an A4 print (so the sale page has its shipping and
        refund forms)."""
        return sold(self.studio, self.shop, {"product": self.shop.download.pk}, {"product": self.shop.print.pk})


@dataclass(frozen=True)
class Visit:
    """How to open a page (`open` returns the page's response), the status and level-one heading
    it must show, and whether it is a shopper's or attendee's page (checked at 320 px too)."""

    open: Callable[[World], Response]
    heading: str | re.Pattern[str]
    status: int = 200
    phone_first: bool = False


def at(
    path: Callable[[World], str], *, signed_in: Callable[[World], User] | None = None
) -> Callable[[World], Response]:
    """Open `path(w)` (which builds what the page needs first), signed in as `signed_in(w)` if given."""

    def open_page(w: World) -> Response:
        address = path(w)
        if signed_in is not None:
            w.signed_in(signed_in(w))
        return w.goto(address)

    return open_page


def owner(w: World) -> User:
    return w.studio.owner


def photographer(w: World) -> User:
    return w.studio.photographer


def pay(checkout_id: str) -> None:
    assert deliver([sandbox_paid(checkout_id)]) == [200]


def fail(checkout_id: str) -> None:
    assert deliver([sandbox_failed(checkout_id)]) == [200]


def _refund_not_reached(w: World) -> str:
    """A paid order whose print's refund landed and then failed at the provider: its page says
    the refund did not reach the shopper."""
    checkout_id = w.order((w.shop.download, 1), (w.shop.print, 1), then=pay)
    with tenant_context(w.tenant.org.pk):
        printed = CheckoutLine.objects.get(checkout_id=checkout_id, kind="print").pk
    refund = ask(w.studio, checkout_id, [printed])
    confirmed(refund, checkout_id)
    failed = sandbox_provider().fail_refund(reference=f"sbx_{checkout_id}", refund_id=fresh(refund).provider_refund_id)
    assert deliver([failed]) == [200]
    drain_outbox()
    assert fresh(refund).provider_failed_at is not None and fresh(refund).landed_at is not None
    return w.order_path(checkout_id)


def _cart(w: World) -> str:
    w.shopper((w.shop.download, 1), (w.shop.print, 2))
    return f"/s/{w.slug}/cart/"


def _sandbox_pay_with_sold_out_line(w: World) -> str:
    client = w.shopper((w.shop.download, 1), (w.shop.print, 2))
    assert submit(client, w.tenant, checkout_form(client, w.tenant)).status_code == 303
    w.shop.set_stock_quantity(1)  # other shoppers bought all but one before this order's turn
    drain_outbox()
    [checkout] = checkouts_of(w.tenant.org.pk)
    return f"/sandbox/pay/{checkout.pk}"


def _find_me_results(w: World) -> Response:
    w.goto(f"/s/{w.slug}/{w.shop.event.slug}/find-me")
    w.page.get_by_label(re.compile("^Selfie")).set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": fake_face_image(["ann"])}
    )
    with w.page.expect_navigation() as navigation:
        w.page.get_by_role("button", name="Search").click()
    return navigation.value


def _attendee_link_sent(w: World) -> Response:
    w.goto(w.attendee_path)
    with w.page.expect_navigation() as navigation:
        w.page.get_by_role("button", name="Someone else has this link? Send me a new one").click()
    return navigation.value


def _choose_studio(w: World) -> Response:
    person = new_user()
    new_member(w.tenant.org, "staff", user=person)
    new_member(cast(Organization, OrganizationFactory(name="Second Studio")), "photographer", user=person)
    w.signed_in(person)
    return w.goto("/studio/choose/")


def _invitations(w: World) -> Response:
    person = new_user()
    assert member_invite(tenant=w.tenant.org, email=person.email, role="staff", actor=w.studio.owner).pending
    w.signed_in(person)
    return w.goto("/studio/invitations/")


def _members(w: World) -> str:
    member_invite(tenant=w.tenant.org, email="newcomer@example.com", role="photographer", actor=w.studio.owner)
    return "/studio/members/"


def _password_reset_link(w: World) -> str:
    user = w.studio.owner
    return f"/studio/reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}/"


def _api_key_revoke(w: World) -> str:
    with tenant_context(w.tenant.org.pk):
        key = ApiKey.objects.get(tenant=w.tenant.org)
    return f"/studio/api-keys/{key.pk}/revoke"


def _announcement(w: World) -> str:
    with tenant_context(w.tenant.org.pk):
        announcement = announcement_create(
            tenant=w.tenant.org,
            event_id=w.shop.event.pk,
            title="Photos are online",
            body="Find yourself in the gallery.",
            actor=w.studio.owner,
            actor_label="test",
        )
    return f"/studio/announcements/{announcement.pk}/"


def _after_a_sale(path: str) -> Callable[[World], str]:
    def build(w: World) -> str:
        assert w.paid_sale
        return path

    return build


def _photographer_credited(w: World) -> str:
    """The wallet of the photographer whose photo was sold (a member of the studio)."""
    new_member(w.tenant.org, "photographer", user=w.shop.photographer)
    assert w.paid_sale
    return "/studio/wallet/"


ANY = re.compile(r"\S")

PAGES: dict[str, Visit] = {
    "home": Visit(at(lambda w: "/"), "Darkroom"),
    # the shop
    "shop-studio": Visit(at(lambda w: f"/s/{w.slug}/"), "Events", phone_first=True),
    "shop-studio-no-match": Visit(at(lambda w: f"/s/{w.slug}/?q=nothing-like-it"), "Events", phone_first=True),
    "shop-gallery": Visit(at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/"), ANY, phone_first=True),
    "shop-photo": Visit(
        at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/photos/{w.shop.photo.pk}/"),
        re.compile(r"^Photo \d+$"),
        phone_first=True,
    ),
    "shop-access-code": Visit(at(lambda w: f"/s/{w.slug}/{w.protected_event.slug}/"), "Private Gala", phone_first=True),
    "shop-find-me": Visit(
        at(lambda w: f"/s/{w.slug}/{w.shop.event.slug}/find-me"), re.compile("^Find me in "), phone_first=True
    ),
    "shop-find-me-results": Visit(_find_me_results, re.compile("^Find me in "), phone_first=True),
    "shop-cart-empty": Visit(at(lambda w: f"/s/{w.slug}/cart/"), "Your cart", phone_first=True),
    "shop-cart": Visit(at(_cart), "Your cart", phone_first=True),
    "shop-order-awaiting-payment": Visit(
        at(lambda w: w.order_path(w.order((w.shop.download, 1)))), "Your order", phone_first=True
    ),
    "shop-order-paid": Visit(
        at(lambda w: w.order_path(w.order((w.shop.download, 1), (w.shop.print, 1), then=pay))),
        "Your order",
        phone_first=True,
    ),
    "shop-order-refund-not-reached": Visit(at(_refund_not_reached), "Your order", phone_first=True),
    "shop-order-failed": Visit(
        at(lambda w: w.order_path(w.order((w.shop.download, 1), then=fail))), "Your order", phone_first=True
    ),
    "shop-orders": Visit(at(lambda w: f"/s/{w.slug}/orders/"), "Find my orders", phone_first=True),
    "shop-orders-sent": Visit(at(lambda w: f"/s/{w.slug}/orders/sent"), "Find my orders", phone_first=True),
    "shop-not-found": Visit(
        at(lambda w: f"/s/{w.slug}/no-such-event/"), "Page not found", status=404, phone_first=True
    ),
    # the sandbox provider's pages
    "sandbox-pay": Visit(
        at(lambda w: f"/sandbox/pay/{w.order((w.shop.download, 1))}"), re.compile(r"^Pay [\d.]+ EUR$"), phone_first=True
    ),
    "sandbox-pay-sold-out-line": Visit(
        at(_sandbox_pay_with_sold_out_line), re.compile(r"^Pay [\d.]+ EUR$"), phone_first=True
    ),
    "sandbox-status": Visit(at(lambda w: f"/sandbox/checkouts/{w.order((w.shop.download, 1))}"), ANY, phone_first=True),
    # attendees
    "attendee-inbox": Visit(at(lambda w: w.attendee_path), re.compile(": "), phone_first=True),
    "attendee-drop-in": Visit(
        at(lambda w: f"{w.attendee_path}drop-in"), re.compile("^New photos of you: "), phone_first=True
    ),
    "attendee-unsubscribe": Visit(at(lambda w: f"{w.attendee_path}unsubscribe"), re.compile(": "), phone_first=True),
    "attendee-link-sent": Visit(_attendee_link_sent, re.compile(": "), phone_first=True),
    "problem-page": Visit(at(lambda w: "/attendee/not-a-token/"), ANY, status=404, phone_first=True),
    # the studio dashboard
    "studio-login": Visit(at(lambda w: "/studio/login/"), "Sign in to your studio"),
    "studio-password-reset": Visit(at(lambda w: "/studio/password-reset/"), "Reset your password"),
    "studio-password-reset-sent": Visit(at(lambda w: "/studio/password-reset/sent/"), "Check your e-mail"),
    "studio-password-reset-confirm": Visit(at(_password_reset_link), "Choose a new password"),
    "studio-choose": Visit(_choose_studio, "Which studio do you want to work in?"),
    "studio-invitations": Visit(_invitations, "Your invitations"),
    "studio-overview": Visit(at(_after_a_sale("/studio/"), signed_in=owner), ANY),
    "studio-events": Visit(at(lambda w: "/studio/events/", signed_in=owner), "Events"),
    "studio-event": Visit(at(lambda w: f"/studio/events/{w.shop.event.pk}/", signed_in=owner), ANY),
    "studio-event-attendees": Visit(
        at(lambda w: f"/studio/events/{w.attendee.event_id}/attendees", signed_in=owner), re.compile("^Attendees of ")
    ),
    "studio-photo-withdraw": Visit(
        at(lambda w: f"/studio/events/{w.shop.event.pk}/photos/{w.shop.photo.pk}/withdraw", signed_in=owner),
        re.compile(r"^Withdraw photo #\d+$"),
    ),
    "studio-sales": Visit(at(_after_a_sale("/studio/sales/"), signed_in=owner), "Sales"),
    "studio-sales-to-ship": Visit(at(_after_a_sale("/studio/sales/?to_ship=1"), signed_in=owner), "Prints to ship"),
    "studio-sale": Visit(at(lambda w: f"/studio/sales/{w.paid_sale}/", signed_in=owner), re.compile(r"^Sale \w+$")),
    "studio-wallet": Visit(at(_after_a_sale("/studio/wallet/"), signed_in=owner), "Your wallet"),
    "studio-wallet-photographer": Visit(
        at(_photographer_credited, signed_in=lambda w: w.shop.photographer), "Your wallet"
    ),
    "studio-announcements": Visit(at(lambda w: "/studio/announcements/", signed_in=owner), "Announcements"),
    "studio-announcement": Visit(at(_announcement, signed_in=owner), "Photos are online"),
    "studio-api-keys": Visit(at(lambda w: "/studio/api-keys/", signed_in=owner), "API keys"),
    "studio-api-key-revoke": Visit(at(_api_key_revoke, signed_in=owner), re.compile("^Revoke API key ")),
    "studio-members": Visit(at(_members, signed_in=owner), "Members"),
    "studio-member-remove": Visit(
        at(lambda w: f"/studio/members/{w.studio.photographer.pk}/remove", signed_in=owner), re.compile("^Remove ")
    ),
    "studio-settings": Visit(at(lambda w: "/studio/settings/", signed_in=owner), "Studio settings"),
    "studio-forbidden": Visit(at(lambda w: "/studio/sales/", signed_in=photographer), "Not allowed", status=403),
    "studio-not-found": Visit(at(lambda w: "/studio/events/999999999/", signed_in=owner), ANY, status=404),
}


@pytest.fixture
def world(
    page: Page,
    live_server: LiveServer,
    tenant_a: TenantBundle,
    shop: Shop,
    studio: StudioPeople,
    protected_event: Event,
) -> World:
    page.set_viewport_size(DESKTOP)
    return World(
        page=page, server=live_server, tenant=tenant_a, shop=shop, studio=studio, protected_event=protected_event
    )


@pytest.mark.parametrize("page_id", list(PAGES))
def test_the_page_meets_wcag_2_1_a_and_aa(world: World, page_id: str) -> None:
    # given: the page, opened in the state people meet it in
    visit = PAGES[page_id]
    response = visit.open(world)
    assert response.status == visit.status, f"{page_id}: {response.url} answered {response.status}"
    world.page.wait_for_load_state("load")
    # when: it is checked at a desktop size, at a phone size and (shoppers', attendees') at 320 px
    problems = structure_problems(world.page, visit.heading)
    problems += axe_problems(world.page, f"at {DESKTOP['width']}x{DESKTOP['height']}")
    world.page.set_viewport_size(PHONE)
    problems += axe_problems(world.page, f"at {PHONE['width']}x{PHONE['height']}")
    if visit.phone_first:
        problems += reflow_problems(world.page)
    # then: nothing stands in the way
    assert not problems, report(page_id, problems)


# --- refused forms: the messages are tied to their fields and announced ------------------------


@dataclass(frozen=True)
class Refusal:
    """A form sent so the server refuses it (`send` returns the refused page's response), and
    the fields (by name) it must mark invalid."""

    send: Callable[[World], Response]
    fields: tuple[str, ...]
    status: range = range(400, 500)


def _submit(w: World, button: str) -> Response:
    """Click `button`, letting the server judge the form (the browser's own checks of
    `required` and `type` are turned off, as a browser without them would send it)."""
    target = w.page.get_by_role("button", name=button, exact=True)
    target.evaluate("b => { b.form.noValidate = true; }")
    with w.page.expect_navigation() as navigation:
        target.click()
    return navigation.value


def _refused_access_code(w: World) -> Response:
    w.goto(f"/s/{w.slug}/{w.protected_event.slug}/")
    w.page.get_by_label("Access code").fill("not-the-code")
    return _submit(w, "See the photos")


def _refused_checkout(w: World) -> Response:
    w.shopper((w.shop.print, 1))
    w.goto(f"/s/{w.slug}/cart/")
    w.page.get_by_label(re.compile("^E-mail address")).fill("ann@")
    return _submit(w, "Place order")


def _refused_order_lookup(w: World) -> Response:
    w.goto(f"/s/{w.slug}/orders/")
    w.page.get_by_label("E-mail address").fill("ann@")
    return _submit(w, "E-mail me my orders")


def _refused_selfie(w: World) -> Response:
    w.goto(f"/s/{w.slug}/{w.shop.event.slug}/find-me")
    w.page.get_by_label(re.compile("^Selfie")).set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": b"not a picture"}
    )
    return _submit(w, "Search")


def _refused_event(w: World) -> Response:
    w.signed_in(w.studio.owner)
    w.goto("/studio/events/")
    return _submit(w, "Create event")


def _refused_invitation(w: World) -> Response:
    w.signed_in(w.studio.owner)
    w.goto("/studio/members/")
    w.page.get_by_label(re.compile("^E-mail")).fill("not-an-address")
    return _submit(w, "Invite")


def _refused_settings(w: World) -> Response:
    w.signed_in(w.studio.owner)
    w.goto("/studio/settings/")
    w.page.get_by_label("Studio name").fill("")
    return _submit(w, "Save")


def _refused_shipment(w: World) -> Response:
    w.signed_in(w.studio.owner)
    w.goto(f"/studio/sales/{w.paid_sale}/")
    return _submit(w, "Mark as shipped")


def _refused_password(w: World) -> Response:
    w.goto(_password_reset_link(w))
    w.page.get_by_label("New password", exact=True).fill("short")
    w.page.get_by_label("New password again").fill("different")
    return _submit(w, "Set the password")


REFUSALS: dict[str, Refusal] = {
    "shop-access-code": Refusal(_refused_access_code, ("code",)),
    "shop-checkout": Refusal(
        _refused_checkout,
        ("email", "shipping_name", "shipping_line1", "shipping_city", "shipping_postal_code", "shipping_country"),
    ),
    "shop-order-lookup": Refusal(_refused_order_lookup, ("email",)),
    "shop-find-me": Refusal(_refused_selfie, ("image",)),
    "studio-event-create": Refusal(_refused_event, ("title",)),
    "studio-member-invite": Refusal(_refused_invitation, ("email",)),
    "studio-settings": Refusal(_refused_settings, ("name",)),
    "studio-sale-ship": Refusal(_refused_shipment, ("carrier",)),
    # Django's PasswordResetConfirmView answers an invalid form with 200, as every FormView does.
    "studio-password-reset-confirm": Refusal(_refused_password, ("new_password2",), status=range(200, 201)),
}


@pytest.mark.parametrize("form_id", list(REFUSALS))
def test_a_refused_forms_messages_are_tied_to_their_fields_and_announced(world: World, form_id: str) -> None:
    # given: a form filled in wrongly
    refusal = REFUSALS[form_id]
    # when: it is sent and the server refuses it
    response = refusal.send(world)
    assert response.status in refusal.status, f"{form_id}: answered {response.status}, not a refusal"
    expect(world.page.locator('[aria-invalid="true"]').first).to_be_attached()
    fields = world.page.evaluate(_INVALID_FIELDS_JS)
    # then: each field named is marked invalid, points to its message, and the message is announced
    problems = [
        f"{name} is not marked aria-invalid" for name in refusal.fields if name not in {f["field"] for f in fields}
    ]
    for field in fields:
        if not field["described"]:
            problems.append(f"{field['field']}: invalid, but no aria-describedby names a message")
        elif not field["announced"]:
            problems.append(
                f"{field['field']}: its message {field['described']!r} is not in a role=alert or live region"
            )
    # and: the refused page passes the page checks and axe too
    problems += structure_problems(world.page, ANY)
    problems += axe_problems(world.page, "on the refused form")
    assert not problems, report(form_id, problems)


SANDBOX_STATUS = "/sandbox/checkouts/"


def test_the_sandbox_status_page_keeps_keyboard_focus_across_its_polls_and_shows_the_payment(world: World) -> None:
    # given: an order awaiting payment, its status page open, and the keyboard on the page's one
    # control, the "Refresh now" link
    refused: list[str] = []
    world.page.on("console", lambda message: refused.append(message.text) if "Refused" in message.text else None)
    checkout_id = world.order((world.shop.download, 1))
    world.goto(f"{SANDBOX_STATUS}{checkout_id}")
    link = world.page.get_by_role("link", name="Refresh now")
    link.focus()
    expect(link).to_be_focused()

    # when: the page fetches its status block twice (htmx polls every 2 s)
    for _ in range(2):
        with world.page.expect_response(
            lambda response: SANDBOX_STATUS in response.url and response.request.headers.get("hx-request") == "true"
        ):
            pass
        world.page.wait_for_timeout(300)  # the swap and its settling

    # then: the keyboard is still on the link, not thrown back to the top of the page
    expect(world.page.get_by_role("link", name="Refresh now")).to_be_focused()

    # when: the payment lands (its webhook, then the messages it causes)
    pay(checkout_id)
    drain_outbox()

    # then: the page shows it by itself, and the polling broke no rule of the CSP
    expect(world.page.get_by_role("heading", level=1)).to_have_text("Paid")
    expect(world.page.get_by_text("your downloads are ready")).to_be_visible()
    assert not refused, refused


# --- status blocks that poll: one persistent live region, changed only when the status is -----

# Tag an element (a JS property survives only as long as the node itself) and count the
# mutations of its text and children from now on.
_WATCH_JS = """el => {
  el.__a11yTag = 'before';
  el.__a11yMutations = 0;
  new MutationObserver(records => { el.__a11yMutations += records.length; })
    .observe(el, {childList: true, subtree: true, characterData: true});
}"""
_WATCHED_JS = "el => ({tagged: el.__a11yTag === 'before', mutations: el.__a11yMutations ?? null})"
_LIVE = '[role="status"], [role="alert"], [aria-live]'


def _polls(page: Page, url_part: str, count: int = 2) -> None:
    """Wait until htmx has fetched a status block (a URL holding `url_part`) `count` times more,
    and each answer had time to be swapped in."""
    for _ in range(count):
        with page.expect_response(
            lambda response: url_part in response.url and response.request.headers.get("hx-request") == "true"
        ):
            pass
        page.wait_for_timeout(300)  # the swap and its settling, if any


def _polite_status_region(page: Page) -> Any:
    """The page's one status region (role="status", not made assertive), watched from now on."""
    region = page.get_by_role("status")
    expect(region).to_have_count(1)
    assert region.get_attribute("aria-live") in (None, "polite"), region.get_attribute("aria-live")
    region.evaluate(_WATCH_JS)
    return region


def test_the_sandbox_status_page_announces_a_status_change_once_in_a_persistent_polite_region(
    world: World,
) -> None:
    # given: an order awaiting payment and its sandbox status page, whose status region says so
    checkout_id = world.order((world.shop.download, 1))
    world.goto(f"{SANDBOX_STATUS}{checkout_id}")
    region = _polite_status_region(world.page)
    expect(region).to_contain_text("Awaiting payment")
    waiting = region.inner_text()

    # when: the page polls twice and nothing has changed
    _polls(world.page, SANDBOX_STATUS)

    # then: the region was not touched (nothing to re-announce)
    assert region.evaluate(_WATCHED_JS) == {"tagged": True, "mutations": 0}
    assert region.inner_text() == waiting

    # when: the payment lands (its webhook, then the messages it causes)
    pay(checkout_id)
    drain_outbox()

    # then: the same region, still a polite status, now says the order is paid
    expect(region).to_contain_text("Paid")
    expect(region).to_contain_text("your downloads are ready")
    assert region.evaluate(_WATCHED_JS)["tagged"], "the status region was replaced, not updated"
    assert region.get_attribute("role") == "status"
    assert region.get_attribute("aria-live") in (None, "polite")


def test_the_order_page_announces_status_and_payment_errors_in_persistent_regions(world: World) -> None:
    # given: an order awaiting payment, its page open; a status region saying so and an (empty)
    # alert region for errors that need the shopper, both there before anything changes
    checkout_id = world.order((world.shop.download, 1))
    world.goto(world.order_path(checkout_id))
    status = _polite_status_region(world.page)
    expect(status).to_contain_text("Ready to pay")
    waiting = status.inner_text()
    alert = world.page.get_by_role("alert")
    expect(alert).to_have_count(1)
    expect(alert).to_have_text("")
    world.page.eval_on_selector_all(_LIVE, "els => els.forEach(el => { el.__a11yTag = 'before'; })")

    # when: the block polls twice and nothing has changed
    _polls(world.page, "/status?since=")

    # then: the status region was not touched
    assert status.evaluate(_WATCHED_JS) == {"tagged": True, "mutations": 0}
    assert status.inner_text() == waiting

    # when: the provider refuses to take the approved payment (the order still awaits it)
    with tenant_context(world.tenant.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
    with tenant_context(world.tenant.org.pk):
        _record_payment_error(checkout=checkout, error="INSTRUMENT_DECLINED")

    # then: the alert region, the same node, says so; the status, unchanged, is not re-announced
    expect(alert).to_contain_text("The payment was not taken")
    assert alert.evaluate("el => el.__a11yTag") == "before", "the alert region was replaced, not updated"
    assert status.evaluate(_WATCHED_JS) == {"tagged": True, "mutations": 0}

    # when: the shopper pays after all
    pay(checkout_id)
    drain_outbox()

    # then: the same status region says the order is paid, and the error is gone
    expect(status).to_contain_text("Paid, thank you!")
    assert status.evaluate(_WATCHED_JS)["tagged"], "the status region was replaced, not updated"
    expect(alert).to_have_text("")
    # and: no live region on the page came in with a swapped block (each is announced reliably)
    untagged = world.page.eval_on_selector_all(
        _LIVE, "els => els.filter(el => el.__a11yTag !== 'before').map(el => el.outerHTML.slice(0, 120))"
    )
    assert not untagged, untagged
