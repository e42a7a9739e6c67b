"""Every POST form of the web UI, fuzzed: the shop (/s/<studio>/...), the attendee pages
(/attendee/<token>/...) and the studio dashboard (/studio/...).

The forms are listed from the URL conf (`post_routes`): a route under those prefixes whose view
takes POST must have an entry in FORMS, so a new form is fuzzed from the day it is added
(`test_every_post_form_is_fuzzed`). For each form, hypothesis (derandomized; FUZZ_EXAMPLES
submissions for its first caller, 8 by default, half as many for each other caller and for the
refused ones together) does what a browser does: GET the page (as the signed-in member where the
page needs one), take the form's CSRF token, its submit_once nonce and its other fields as
rendered, fill in what a person would type, then change the fields: empty, very long (10^5
characters), control characters, NUL, lone surrogates (sent as the percent-encoded bytes a client
would send), direction overrides, non-ASCII digits, huge and negative integers, wrong types,
repeated, missing and unknown fields, text carrying HTML (`MARKER`), odd files (names, contents),
and bodies Django refuses to parse or cannot (`BODIES`). At most three fields change at a time,
the others sent as a person fills them in, so that a submission gets past the first check. The
CSRF token and the nonce stay valid: the fuzz is of what the view reads.

The query string of the form's action is changed too (`QUERIES`): dropped, kept, repeated, with
unknown and repeated parameters, the form's own field names, paging parameters (`page=`, ...)
with odd numbers, redirect-ish parameters (`next=`, ...) pointing off-site as browsers still
follow them, very long values, control characters, and percent-encoded garbage sent as is.

Who sends it (`callers_of`):

* a studio dashboard form, as every member role that may send it (`Form.roles`, the role matrix
  of apps/web/studio/access.py written out); `test_form_refuses_callers_without_its_role` sends it
  (as its page renders it for the owner) as every other member role, a signed-in account in no
  studio (403, nothing written) and an anonymous browser (a redirect to the sign-in page, nothing
  written), and checks that a refused member's page does not offer the form;
* a shop or attendee form, as an anonymous browser, as a member of the studio signed in, and as a
  member of another studio signed in (whose requests run in that studio's tenant context);
* signing in, out, choosing a studio, invitations and password resets, as their page needs.

Checked for every submission, through the real WSGI stack, PostgreSQL and Redis:

* never a 5xx (an exception raised by a view fails the test with its traceback);
* a redirect leads to this site (`is_local`, read as a browser reads a Location), and the page an
  accepted form leads to opens (no 5xx, no typed HTML unescaped);
* a refused submission (anything but the form's accepted answers, a 303 mostly) writes nothing:
  a fingerprint of every table (row count and a checksum of the rows, read by the superuser, so
  no row-level security hides a tenant's rows) is the same before and after. `django_session` is
  left out: a refused form legitimately touches the session (the session created for an
  anonymous shopper's form key space, `submit_once.session_caller`; flash messages);
* a member role that may send the form is never refused for its role (no 403);
* what was typed comes back escaped: no page ever holds `MARKER` unescaped, and a re-rendered
  form shows each text field's typed value (escaped), except for secrets (`Form.not_echoed`).
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import parse_qsl, quote_from_bytes, urljoin, urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import SuspiciousOperation
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.http.multipartparser import MultiPartParserError
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql

from apps.catalog.models import Event, Photo
from apps.commerce.models import Checkout
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace
from apps.ledger.models import LedgerAccount
from apps.ledger.projection import projection_rebuild
from apps.notifications.models import Announcement, Attendee, Notification
from apps.notifications.selectors import attendee_token
from apps.notifications.services import announcement_create
from apps.outbox.models import InboxEntry
from apps.payouts.selectors import REQUEST_AUDIT_ACTION, WALLET_REQUEST_CONSUMER
from apps.payouts.services import payout_destination_set
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey, AuditLog, Membership, MembershipInvitation, Organization, User
from apps.tenancy.services import api_key_issue, member_invite
from tests.commerce.fixtures import checkout_body, empty_broker, post_checkout  # noqa: F401 - a fixture
from tests.conftest import admin_url_for
from tests.factories.catalog import PhotoFactory
from tests.factories.commerce import Shop, make_shop
from tests.factories.tenancy import MembershipFactory, OrganizationFactory, UserFactory
from tests.fixtures import TenantBundle
from tests.payouts.helpers import post as ledger_post
from tests.web.shop.conftest import ACCESS_CODE, a_photo, an_event, make_ready
from tests.web.studio.conftest import StudioPeople, sold

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))

# Routes of the web UI (the resolver's full route starts with one of these).
WEB_PREFIXES = ("s/", "studio/", "attendee/")
# Tables a refused form may write legitimately (see the module's docstring).
WRITTEN_ON_REFUSAL = frozenset({"django_session"})

# Text carrying HTML: a page must never hold it as is.
MARKER = "<fz-x>\"'&"
LONG = 100_000

# --- the URL conf: which routes take POST -------------------------------------------------


def _methods_of(view: Any) -> frozenset[str] | None:
    """The HTTP methods a view takes (None: any). Function views are limited by Django's
    `require_http_methods` family (its closure holds `request_method_list`); class-based views
    take a method they have a handler for."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return frozenset(m.upper() for m in view_class.http_method_names if hasattr(view_class, m))
    seen: Any = view
    while seen is not None:
        for cell in getattr(seen, "__closure__", None) or ():
            try:
                content = cell.cell_contents
            except ValueError:
                continue
            if isinstance(content, list) and content and all(isinstance(m, str) and m.isupper() for m in content):
                return frozenset(content)
        seen = getattr(seen, "__wrapped__", None)
    return None


def _routes(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            space = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern), space)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), f"{namespace}{pattern.name}", pattern.callback


def post_routes() -> dict[str, str]:
    """{url name: route} of every web UI route whose view takes POST."""
    found: dict[str, str] = {}
    for route, name, view in _routes(get_resolver().url_patterns):
        methods = _methods_of(view)
        if route.startswith(WEB_PREFIXES) and (methods is None or "POST" in methods):
            found[name] = route
    return found


# --- pages and their forms --------------------------------------------------------------


@dataclass
class Field:
    """One name of a form: its kind (an input's type, "select", "textarea"), the values a browser
    sends for it as rendered (none for an unticked box) and the values it offers (options, radios,
    boxes)."""

    name: str
    kind: str
    values: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    max_length: int | None = None


@dataclass
class HtmlForm:
    action: str
    enctype: str
    fields: dict[str, Field] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[HtmlForm] = []
        self._form: HtmlForm | None = None
        self._select: tuple[Field, bool] | None = None  # the select, and whether it is multiple
        self._textarea: Field | None = None

    def _field(self, name: str, kind: str) -> Field:
        assert self._form is not None
        return self._form.fields.setdefault(name, Field(name, kind))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self._form = HtmlForm(action=a.get("action") or self.page_url, enctype=a.get("enctype", ""))
            self.forms.append(self._form)
        elif tag == "option" and self._select is not None:
            select, multiple = self._select
            select.options.append(a.get("value", ""))
            if "selected" in a or (not multiple and not select.values):
                select.values = [*select.values, a.get("value", "")] if multiple else [a.get("value", "")]
        elif self._form is None or not a.get("name"):
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset"):
                return
            f = self._field(a["name"], kind)
            f.max_length = int(a["maxlength"]) if a.get("maxlength", "").isdigit() else None
            if kind in ("checkbox", "radio"):
                f.options.append(a.get("value", "on"))
                if "checked" in a:
                    f.values.append(a.get("value", "on"))
            elif kind != "file":
                f.values.append(a.get("value", ""))
        elif tag == "select":
            self._select = (self._field(a["name"], "select"), "multiple" in a)
        elif tag == "textarea":
            self._textarea = self._field(a["name"], "textarea")
            self._textarea.max_length = int(a["maxlength"]) if a.get("maxlength", "").isdigit() else None
            self._textarea.values.append("")

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.values[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self._textarea.values[-1] = self._textarea.values[-1].removeprefix("\n")
            self._textarea = None


def forms_on(body: str, page_url: str) -> list[HtmlForm]:
    parser = _FormParser(page_url)
    parser.feed(body)
    return parser.forms


# --- what is sent -----------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\t\r\n",
    "x" * LONG,
    "\x00",
    "a\x00b",
    "\x01\x02\x07\x08\x0b\x0c\x1b\x7f",
    "\x85\u2028\u2029",
    "\ud800",
    "a\udfffb",
    "\ud83d",
    "\u202e",
    "abc\u202egpj.exe",
    "\u2066x\u2069",
    "\u200f\ufeff",
    "١٢٣",
    "٣",
    "²",
    "๓",
    "\uff11\uff12",  # fullwidth 12
    "\U0001d7d7",  # mathematical bold 9
    "9" * 30,
    str(2**63),
    str(2**63 - 1),
    str(2**64),
    str(-(2**63) - 1),
    "1" + "0" * 400,
    "-1",
    "-0",
    "0",
    "1e5",
    "1.5",
    "NaN",
    "inf",
    "0x10",
    "1_000",
    " 7 ",
    "+7",
    "true",
    "null",
    "[]",
    "{}",
    "abc",
    "2024-02-30",
    "99999-01-01",
    "//evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    "/s/../studio/",
    "%00",
    "🙂" * 50,
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45@example.test",  # fullwidth "example"
    "a@b",
    "ann@example.test",
]
# Files: odd names (the multipart part's filename, sent as bytes) and odd contents.
_PNG = fake_face_image(["ann"])
ODD_FILES = st.tuples(
    st.sampled_from(
        ["me.png", "", "a\x00b.png", "\ud800.png", "x" * 10_000 + ".png", "../../etc/passwd", MARKER, "CON"]
    ),
    st.sampled_from(
        [
            _PNG,
            b"",
            b"not an image",
            _PNG[:40],
            # A PNG header claiming 100000 x 100000 pixels (a decompression bomb's).
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        ]
    ),
)
MARKED = [MARKER, f"{MARKER}{'y' * LONG}", f"\u202e{MARKER}", f"{MARKER}\x00", f"  {MARKER}  "]
UNKNOWN_NAMES = ["x", "id", "tenant_id", "user", "is_superuser", "status", "amount_minor", "price", "next", "nonce"]
# Sent as rendered: the fuzz is of what the view reads past the CSRF check and the form's nonce.
UNCHANGED = frozenset({"csrfmiddlewaretoken", "nonce"})
# At most this many fields of one submission are changed, the others sent as a person fills them
# in: a form is refused at its first bad field, so more would rarely reach the later checks.
MAX_CHANGED = 3


# One value sent for a changed field, chosen before the page is seen (so that hypothesis draws
# the same shapes whatever the page renders, which changes as accepted forms write): an odd value,
# text carrying HTML alone or after what a person would type, one of the field's own options
# (by index), or what a person would type.
ONE_VALUE = st.one_of(
    st.tuples(st.just("odd"), st.sampled_from(NASTY)),
    st.tuples(st.just("odd"), st.sampled_from(MARKED)),
    st.tuples(st.just("after"), st.sampled_from(MARKED)),
    st.tuples(st.just("option"), st.integers(0, 63)),
    st.tuples(st.just("kept"), st.just("")),
)
# A changed field (by index, modulo the form's fields): not sent, sent once, or repeated.
CHANGE = st.tuples(
    st.integers(0, 255),
    st.one_of(st.just([]), ONE_VALUE.map(lambda one: [one]), st.lists(ONE_VALUE, min_size=2, max_size=3)),
)


# --- the action's query string --------------------------------------------------------

# Names a query string is sent with: the app's paging parameters, its other query parameters,
# names a redirect is often read from, names no view reads, and text carrying HTML. A piece may
# also name one of the form's fields or of the action's own parameters, by index (`with_query`).
PAGE_NAMES = ["page", "ipage", "products_page", "studio_payouts_page", "downloads_page", "entries_older_than"]
REDIRECT_NAMES = ["next", "return_to", "redirect", "redirect_to", "redirect_uri", "url", "back", "success_url"]
QUERY_NAMES = [
    *PAGE_NAMES,
    *("older_than", "to_ship", "q", "since", "created", "said", "alerted"),
    *REDIRECT_NAMES,
    *UNKNOWN_NAMES,
    MARKER,
]
# Off-site addresses, spelled as browsers still follow them (an open redirect after a POST).
OFF_SITE = [
    "//evil.example/",
    "https://evil.example/",
    "https:/evil.example",
    "https:evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    " //evil.example",
    "\x00//evil.example",
    "//evil.example@testserver/",
    "https://testserver@evil.example/",
    "https://evil.example#@testserver/",
    "/%2F%2Fevil.example",
    "%2F%2Fevil.example",
    "//%65vil.example",
    "javascript:alert(1)",
    "data:text/html,<b>x</b>",
]
PAGE_NUMBERS = [
    "0",
    "1",
    "2",
    "-1",
    "99999",
    "9" * 30,
    "1" + "0" * 400,
    "²",
    "\u0661",
    "1e5",
    "1.5",
    " 2",
    "+2",
    "0x2",
    "",
]
# Pieces of a query string sent as they are (not percent-encoded again): broken escapes, escaped
# NUL, CR LF, lone surrogates and overlong UTF-8, separators without names or values, raw control
# characters and raw non-ASCII bytes.
RAW_QUERY = [
    *("%", "%Z", "%zz", "%%", "a%", "%ff%fe=%80", "%ED%A0%80=%ED%BF%BF", "%C0%AF=%C0%AF", "%00=%00"),
    *("next=%0d%0aLocation:%20//evil.example", "page=%0d%0a2", "page=2%00", "page=%EF%BC%92"),
    *("&", "&&", "=", "==", ";", "&=&", "a=b=c", "+=+", "%2B", "page", "page=", "page&page", "page=1;page=2"),
    *("\x00", "\x01\x1b\x7f", "\r\n", "a b", "\u00e9=\u00fc", "\ud800", "?", "??=?"),
]
KEPT = ("kept",)
# One piece of the query string: the action's own query (again, when it is there already), a
# redirect-ish parameter off-site, a page number, any parameter (a name or an index, see
# QUERY_NAMES) with any value, or raw text.
QUERY_PIECE = st.one_of(
    st.just(KEPT),
    st.tuples(st.just("param"), st.sampled_from(REDIRECT_NAMES), st.sampled_from(OFF_SITE)),
    st.tuples(st.just("param"), st.sampled_from(PAGE_NAMES), st.sampled_from(PAGE_NUMBERS)),
    st.tuples(
        st.just("param"),
        st.one_of(st.sampled_from(QUERY_NAMES), st.integers(0, 255)),
        st.sampled_from([*NASTY, *OFF_SITE, *PAGE_NUMBERS, *MARKED]),
    ),
    st.tuples(st.just("raw"), st.sampled_from(RAW_QUERY)),
)
# The query string the form is posted with: as the page renders its action (the simplest
# example, so hypothesis starts there), else up to four pieces (none: the action's own dropped).
QUERIES = st.one_of(st.just([KEPT]), st.lists(QUERY_PIECE, max_size=4))


def _quoted(text: str) -> str:
    return quote_from_bytes(_bytes(text), safe="/:@")


def with_query(action: str, pieces: list[tuple[Any, ...]], form: HtmlForm) -> tuple[str, str]:
    """The path `action` posts to, and the query string `pieces` make of it, as the WSGI server
    passes it on (the bytes sent, read as latin-1)."""
    parts = urlsplit(action)
    names = [*form.fields, *(name for name, _ in parse_qsl(parts.query, keep_blank_values=True))]
    sent: list[str] = []
    for piece in pieces:
        if piece[0] == "kept":
            if parts.query:
                sent.append(parts.query)
        elif piece[0] == "param":
            name, value = piece[1], piece[2]
            if isinstance(name, int):
                name = names[name % len(names)] if names else "x"
            sent.append(f"{_quoted(name)}={_quoted(value)}")
        else:
            sent.append(piece[1])
    return parts.path, _bytes("&".join(sent)).decode("latin-1")


def is_local(location: str, base: str) -> bool:
    """Whether a browser following `location` from `base` (a path of this site) stays on this
    site: read as browsers read it (leading and trailing control characters and spaces dropped,
    tabs and line breaks removed, backslashes taken for slashes)."""
    seen = re.sub(r"[\t\r\n]", "", location.strip("".join(map(chr, range(0x21))))).replace("\\", "/")
    target = urlsplit(urljoin(f"http://testserver{base}", seen))
    return target.scheme in ("http", "https") and target.hostname == "testserver"


@dataclass(frozen=True)
class Plan:
    """What to change in a form: up to MAX_CHANGED fields (the others sent as a person fills them
    in, since a form is refused at its first bad field), the files (None: as a person attaches
    them), unknown fields added, how the body goes (`encode`) and the action's query string
    (`with_query`)."""

    changes: list[tuple[int, list[tuple[str, Any]]]]
    files: list[tuple[str, bytes]] | None
    unknown: list[tuple[str, str]]
    body: str
    query: list[tuple[Any, ...]]


# How the body is sent: as the form's enctype says (mostly), with more fields than Django parses
# (DATA_UPLOAD_MAX_NUMBER_FIELDS), a field over DATA_UPLOAD_MAX_MEMORY_SIZE, cut short (a broken
# percent-escape and bytes that are no UTF-8, or a multipart body without its end), or as text.
BODIES = ["form"] * 6 + ["many", "big", "cut", "text"]

PLANS = st.builds(
    Plan,
    changes=st.lists(CHANGE, max_size=MAX_CHANGED),
    files=st.one_of(st.none(), st.none(), st.lists(ODD_FILES, max_size=3)),
    unknown=st.lists(st.tuples(st.sampled_from(UNKNOWN_NAMES), st.sampled_from(NASTY)), max_size=2),
    body=st.sampled_from(BODIES),
    query=QUERIES,
)
# Sent first by a form's first caller, whatever FUZZ_EXAMPLES says: the form as a person fills it
# in (accepted, mostly), posted with every redirect-ish parameter off-site (two spellings) and the
# next page.
OFF_SITE_PLANS = [
    Plan(
        changes=[],
        files=None,
        unknown=[],
        body="form",
        query=[KEPT, *(("param", name, off_site) for name in REDIRECT_NAMES), ("param", "page", "2")],
    )
    for off_site in ("//evil.example/", "/\\evil.example")
]


@dataclass
class Submission:
    pairs: list[tuple[str, str]]
    files: list[tuple[str, str, bytes]]  # (field, file name, content)
    typed: dict[str, list[str]]  # text fields: the values sent

    def describe(self) -> str:
        shown = [
            (name, value if len(value) < 80 else f"{value[:60]}...({len(value)} chars)") for name, value in self.pairs
        ]
        return f"{shown} files={[(f, n, len(c)) for f, n, c in self.files]}"


TEXT_KINDS = frozenset({"text", "email", "search", "tel", "url", "number", "date", "textarea"})


def _one(kind: str, value: Any, f: Field, base: list[str]) -> str:
    if kind == "odd":
        return str(value)
    if kind == "after":
        return (base[-1] if base else "") + str(value)
    if kind == "option":
        return f.options[value % len(f.options)] if f.options else ""
    return base[-1] if base else ""


def submission(plan: Plan, form: HtmlForm, filled: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Submission:
    """`form` as a person fills it in (`filled`, else as rendered; the CSRF token and the nonce
    as rendered), changed by `plan`."""
    names = [name for name, f in form.fields.items() if name not in UNCHANGED and f.kind != "file"]
    changed = {names[index % len(names)]: values for index, values in plan.changes} if names else {}
    pairs: list[tuple[str, str]] = []
    typed: dict[str, list[str]] = {}
    sent_files: list[tuple[str, str, bytes]] = []
    for name, f in form.fields.items():
        if f.kind == "file":
            if name in files:
                sent_files.extend((name, *one) for one in ([files[name]] if plan.files is None else plan.files))
            continue
        fill = filled.get(name, f.values)
        base = list(fill) if isinstance(fill, list) else [fill]
        values = [_one(kind, value, f, base) for kind, value in changed[name]] if name in changed else base
        pairs.extend((name, value) for value in values)
        if f.kind in TEXT_KINDS and values:
            typed[name] = values
    pairs.extend(plan.unknown)
    return Submission(pairs=pairs, files=sent_files, typed=typed)


def _bytes(text: str) -> bytes:
    # A lone surrogate goes out as the three bytes a careless client would encode it as.
    return text.encode("utf-8", "surrogatepass")


def encode(sent: Submission, *, multipart: bool, how: str = "form") -> tuple[bytes, str]:
    """The request body and its content type: the form's encoding, changed as `how` says (BODIES)."""
    pairs = list(sent.pairs)
    if how == "many":
        pairs += [(f"f{i}", "1") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)]
    elif how == "big":
        pairs.append(("big", "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)))
    if not multipart or how == "text":
        body = "&".join(f"{quote_from_bytes(_bytes(k))}={quote_from_bytes(_bytes(v))}" for k, v in pairs).encode()
        if how == "cut":
            body += b"&%Z&\xff\xfe=%"
        return body, "text/plain" if how == "text" else "application/x-www-form-urlencoded"
    boundary = f"fuzz{secrets.token_hex(8)}"
    parts: list[bytes] = []
    for name, value in pairs:
        parts.append(_bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'))
    for name, filename, content in sent.files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(_bytes(f"{head}Content-Type: image/png\r\n\r\n") + content + b"\r\n")
    if how == "cut":
        # Without its end, the last part runs to the end of the body: one of its own, so that the
        # CSRF token (the form's first field, and its only one where the rest are files) reads whole.
        parts.append(_bytes(f'--{boundary}\r\nContent-Disposition: form-data; name="cut"\r\n\r\nx'))
    else:
        parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- writes -----------------------------------------------------------------------------


class Tables:
    """A fingerprint of every table, read by the superuser (no row-level security applies)."""

    def __init__(self) -> None:
        owner = connections["owner"]
        names = sorted(set(owner.introspection.django_table_names(only_existing=True, include_views=False)))
        self.conn = psycopg.connect(admin_url_for(owner.settings_dict["NAME"]), autocommit=True)
        self.query = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT {name}, count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) "
                "FROM {table} t"
            ).format(name=sql.Literal(name), table=sql.Identifier(name))
            for name in names
            if name not in WRITTEN_ON_REFUSAL
        )

    def fingerprint(self) -> dict[str, tuple[int, str]]:
        return {name: (count, digest) for name, count, digest in self.conn.execute(self.query).fetchall()}

    def close(self) -> None:
        self.conn.close()


# --- the world the forms act on ---------------------------------------------------------


def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def signed_in(user: User) -> Client:
    client = browser()
    client.force_login(user)
    return client


def selfie() -> bytes:
    return fake_face_image(["ann"])


@dataclass
class Target:
    """Where one submission starts: the page to GET (with `client`), which of its forms to send
    (the first whose action's path is `action`, else the one posting to the page itself), what a
    person fills in and the files they attach."""

    client: Client
    page: str
    action: str = ""
    filled: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


# Member roles of a studio (apps/tenancy Membership.Role), and the callers of the shop's and the
# attendee pages: a browser signed in nowhere, signed in as a member of the studio, and signed in
# as a member of another studio (its requests run in that studio's tenant context).
ROLES = ("owner", "photographer", "staff")
ANONYMOUS, STUDIO_MEMBER, OTHER_STUDIO = "anonymous", "studio-member", "other-studio"
SHOP_CALLERS = (ANONYMOUS, STUDIO_MEMBER, OTHER_STUDIO)
# A signed-in account that is a member of no studio and has no pending invitation.
NO_STUDIO = "no-studio"


class World:
    """One studio (tenant_a) with a priced shop, its people and what the forms act on, made on
    first use; one-shot targets (a member removed, a sale refunded) are made again when gone.

    `caller` sends the forms: a member role (ROLES) for the studio dashboard, one of SHOP_CALLERS
    for the shop and attendee pages."""

    def __init__(self, tenant: TenantBundle) -> None:
        self.tenant = tenant
        self.org: Organization = tenant.org
        self.owner: User = tenant.owner
        self.caller = "owner"
        self.clients: dict[str, Client] = {}
        self.wallets: set[int] = set()

    def client(self, key: str, make: Callable[[], Client]) -> Client:
        if key not in self.clients:
            self.clients[key] = make()
        return self.clients[key]

    def owner_client(self) -> Client:
        return self.client("owner", lambda: signed_in(self.owner))

    def member(self, role: str) -> User:
        """The studio's member acting in `role`: its owner, the shop's photographer, a staff member."""
        if role == "owner":
            return self.owner
        return self.shop.photographer if role == "photographer" else self.staff

    def member_client(self) -> Client:
        """The browser of the member `caller` names, signed in."""
        return self.client(f"member:{self.caller}", lambda: signed_in(self.member(self.caller)))

    def new_browser(self) -> Client:
        """A browser of the shop's or attendee pages' `caller`: anonymous, or signed in."""
        if self.caller == STUDIO_MEMBER:
            return signed_in(self.owner)
        if self.caller == OTHER_STUDIO:
            return signed_in(self.other_studio_owner)
        return browser()

    def refused_client(self, caller: str) -> Client:
        """A browser of `caller` (a member role, NO_STUDIO or ANONYMOUS) holding a CSRF cookie."""

        def make() -> Client:
            client = browser()
            if caller == NO_STUDIO:
                client.force_login(self.stranger)
            elif caller != ANONYMOUS:
                client.force_login(self.member(caller))
            client.get("/studio/password-reset/")  # any page with a form sets the CSRF cookie
            return client

        return self.client(f"refused:{caller}", make)

    @cached_property
    def staff(self) -> User:
        return cast(Membership, MembershipFactory(tenant=self.org, role="staff")).user

    @cached_property
    def stranger(self) -> User:
        return cast(User, UserFactory())

    @cached_property
    def other_studio_owner(self) -> User:
        return cast(Membership, MembershipFactory(role="owner")).user

    @cached_property
    def shop(self) -> Shop:
        built = make_shop(org=self.org, stock=1_000_000)
        make_ready(built.photo)
        MembershipFactory(tenant=self.org, user=built.photographer, role="photographer")
        return built

    @cached_property
    def protected_event(self) -> Event:
        event = an_event(
            self.org, slug="private-gala", visibility="access_code", access_code_hash=make_password(ACCESS_CODE)
        )
        a_photo(event)
        return event

    def shop_url(self, *parts: Any) -> str:
        return "/s/" + "/".join(str(p) for p in (self.org.slug, *parts)) + "/"

    def in_cart(self, client: Client, *products: Any) -> None:
        """Put the products in the client's cart (as the photo page does) unless they are there."""
        carts = client.session.get("shop_carts") or {}
        held = carts.get(str(self.org.pk)) or {}
        for product in products:
            if str(product.pk) in held:
                continue
            page = self.shop_url(self.shop.event.slug, "photos", self.shop.photo.pk)
            client.get(page)
            token = client.cookies["csrftoken"].value
            response = client.post(page, {"product": product.pk, "quantity": 1, "csrfmiddlewaretoken": token})
            assert response.status_code == 303, response.content.decode()[:500]

    # attendees

    @cached_property
    def attendee(self) -> Attendee:
        with tenant_context(self.org.pk):
            return Attendee.objects.create(tenant=self.org, event=self.shop.event, email="ann@example.test")

    def attendee_path(self, page: str = "") -> str:
        with tenant_context(self.org.pk):
            attendee = Attendee.objects.get(pk=self.attendee.pk)
        token = attendee_token(tenant_id=self.org.pk, attendee_id=attendee.pk, generation=attendee.link_generation)
        return f"/attendee/{token}/{page}"

    def attendee_set(self, **fields: Any) -> None:
        with tenant_context(self.org.pk):
            Attendee.objects.filter(pk=self.attendee.pk).update(**fields)

    def unread_notification(self) -> None:
        with tenant_context(self.org.pk):
            note, _ = Notification.objects.get_or_create(
                tenant=self.org,
                attendee=self.attendee,
                dedupe_key="fuzz",
                defaults={"kind": "announcement", "title": "Hello", "body": "Photos are online."},
            )
            Notification.objects.filter(pk=note.pk).update(read_at=None)

    # studio

    def a_member(self, role: str = "photographer") -> User:
        """A member of the studio other than the owner (a new one once removed)."""
        with tenant_context(self.org.pk):
            membership = (
                Membership.objects.filter(tenant=self.org, role=role).exclude(user=self.owner).order_by("pk").last()
            )
        if membership is not None:
            return membership.user
        return cast(Membership, MembershipFactory(tenant=self.org, role=role)).user

    def an_invitation(self, *, expired: bool = False) -> MembershipInvitation:
        """The studio's invitation (made again once withdrawn), past its expiry when `expired`
        (again after each renewal)."""
        with tenant_context(self.org.pk):
            invitation = MembershipInvitation.objects.filter(tenant=self.org).order_by("pk").last()
            if invitation is None:
                email = f"invitee-{uuid.uuid4().hex[:8]}@example.test"
                invitation = member_invite(tenant=self.org, email=email, role="staff", actor=self.owner).invitation
                assert invitation is not None
            if expired:
                past = timezone.now() - timedelta(days=1)
                MembershipInvitation.objects.filter(pk=invitation.pk).update(expires_at=past)
        return invitation

    @cached_property
    def outsider(self) -> User:
        """An account (password "pw") in no studio: it signs in, resets its password, is invited."""
        return cast(User, UserFactory())

    def invitation_to_outsider(self) -> MembershipInvitation:
        """A pending invitation of `outsider` (from a new studio once they answered the last)."""
        with system_context("test: invitations"):
            pending = MembershipInvitation.objects.filter(user=self.outsider).first()
        if pending is not None:
            return pending
        org = cast(Organization, OrganizationFactory())
        owner = cast(Membership, MembershipFactory(tenant=org, role="owner")).user
        with tenant_context(org.pk):
            invited = member_invite(tenant=org, email=self.outsider.email, role="staff", actor=owner).invitation
        assert invited is not None
        return invited

    def a_photo_to_withdraw(self) -> Photo:
        with tenant_context(self.org.pk):
            photo = Photo.objects.filter(event=self.shop.event, withdrawn_at__isnull=True).exclude(
                pk=self.shop.photo.pk
            )
            found = photo.order_by("pk").last()
        return found or cast(Photo, PhotoFactory(event=self.shop.event, photographer=self.shop.photographer))

    def a_sale(self, kind: str) -> str:
        """A paid sale of a download and a print whose `kind` form ("ship" or "refund") the sale
        page still offers (a new sale once it does not)."""
        sale = getattr(self, f"_sale_{kind}", None)
        if sale is not None:
            body = self.owner_client().get(f"/studio/sales/{sale}/").content.decode()
            if f"/studio/sales/{sale}/{kind}" in body:
                return sale
        people = StudioPeople(self.org, self.owner, self.owner, self.owner, self.tenant)
        sale = sold(people, self.shop, {"product": self.shop.download.pk}, {"product": self.shop.print.pk})
        setattr(self, f"_sale_{kind}", sale)
        return sale

    def an_announcement(self) -> Announcement:
        with tenant_context(self.org.pk):
            found = Announcement.objects.filter(tenant=self.org, send_requested_at__isnull=True).order_by("pk").last()
        if found is not None:
            return found
        with tenant_context(self.org.pk):
            return announcement_create(
                tenant=self.org,
                event_id=self.shop.event.pk,
                title="Hello",
                body="Photos online.",
                actor=self.owner,
                actor_label="fuzz",
            )

    def an_api_key(self) -> ApiKey:
        with tenant_context(self.org.pk):
            found = ApiKey.objects.filter(tenant=self.org, revoked_at__isnull=True).order_by("pk").last()
            return found or api_key_issue(tenant=self.org, name="fuzz", actor=self.owner).api_key

    @cached_property
    def several_studios_user(self) -> User:
        user = cast(User, UserFactory())
        MembershipFactory(tenant=self.org, user=user, role="staff")
        MembershipFactory(user=user, role="owner")
        return user

    def with_wallet(self, user: User) -> User:
        """`user`, with a EUR wallet that a payout request would pay (credited, projected, and a
        payout destination), so the wallet page offers the request form."""
        if user.pk not in self.wallets:
            with tenant_context(self.org.pk):
                account = LedgerAccount.objects.create(
                    tenant=self.org, kind=LedgerAccount.Kind.WALLET, currency="EUR", owner=user
                )
                payout_destination_set(tenant=self.org, owner=user, provider="sandbox", destination=f"bank-{user.pk}")
            ledger_post(self.org, account, 5000, kind="credit")
            projection_rebuild()
            self.wallets.add(user.pk)
        return user

    @cached_property
    def failed_checkout(self) -> str:
        created = post_checkout(self.tenant.client(), checkout_body(self.shop, {"product": self.shop.download.pk}))
        assert created.status_code == 201, created.content
        checkout_id = str(created.json()["id"])
        with system_context("test: a failed checkout"):
            Checkout.objects.filter(pk=checkout_id).update(status=Checkout.Status.FAILED)
        return checkout_id


# --- the forms --------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """How to reach one POST route's form, and what it does with what it is sent.

    `accepted`: the statuses of an accepted submission (which may write); any other is a refusal,
    which must write nothing. `not_echoed`: text fields a re-rendered form leaves empty on purpose
    (secrets). `roles`: for a studio dashboard form, the member roles that may send it (every
    other one is refused with a 403); empty for the other forms."""

    target: Callable[[World], Target]
    accepted: frozenset[int] = frozenset({302, 303})
    not_echoed: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()


# Who may send a studio dashboard form (the role matrix of apps/web/studio/access.py's docstring).
OWNERS = frozenset({"owner"})
UPLOADERS = frozenset({"owner", "photographer"})
SALES_AND_ATTENDEES = frozenset({"owner", "staff"})
EVERY_MEMBER = frozenset(ROLES)


def _shopper(w: World) -> Client:
    return w.client(f"shopper:{w.caller}", w.new_browser)


def _cart_target(w: World, action: str) -> Target:
    client = _shopper(w)
    w.in_cart(client, w.shop.print, w.shop.download)
    return Target(client, w.shop_url("cart"), action=f"/s/{w.org.slug}/cart/{action}")


def _unlock(w: World) -> Target:
    # A fresh session each time: one that entered the code is never asked again.
    w.clients.pop(f"unlock:{w.caller}", None)
    return Target(
        w.client(f"unlock:{w.caller}", w.new_browser), w.shop_url(w.protected_event.slug), filled={"code": ACCESS_CODE}
    )


def _checkout(w: World) -> Target:
    target = _cart_target(w, "checkout")
    address = {
        "shipping_name": "Ann Example",
        "shipping_line1": "Hauptstrasse 1",
        "shipping_city": "Berlin",
        "shipping_postal_code": "10115",
        "shipping_country": "DE",
    }
    target.filled = {"email": "ann@example.test", **address}
    return target


def _refill(w: World) -> Target:
    client = _shopper(w)
    session = client.session
    session["shop_checkouts"] = {str(w.org.pk): [w.failed_checkout]}
    session.save()
    page = w.shop_url("checkouts", w.failed_checkout)
    return Target(client, page, action=f"{page}refill")


def _dropin_delete(w: World) -> Target:
    with tenant_context(w.org.pk):
        has_face = AttendeeFace.objects.filter(attendee=w.attendee).exists()
    client = w.client(f"attendee:{w.caller}", w.new_browser)
    if not has_face:
        response = client.post(w.attendee_path("drop-in"), {"image": _upload(), "consent": "yes"})
        assert response.status_code == 303, response.content.decode()[:500]
    return Target(client, w.attendee_path("drop-in"), action=w.attendee_path("drop-in/delete"))


def _upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("me.png", selfie(), content_type="image/png")


def _attendee(page: str, action: str, prepare: Callable[[World], None] | None = None) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        if prepare is not None:
            prepare(w)
        return Target(
            w.client(f"attendee:{w.caller}", w.new_browser),
            w.attendee_path(page),
            action=w.attendee_path(action) if action else "",
            files={"image": ("me.png", selfie())},
            filled={"consent": "yes"} if action == "drop-in" else {},
        )

    return target


def _studio(
    page: Callable[[World], str], action: Callable[[World], str] | None = None, **filled: Any
) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        return Target(w.member_client(), page(w), action=action(w) if action else "", filled=dict(filled))

    return target


def _event_page(w: World) -> str:
    return f"/studio/events/{w.shop.event.pk}/"


def _on_event_page(action: str, **filled: Any) -> Callable[[World], Target]:
    return _studio(_event_page, lambda w: f"/studio/events/{w.shop.event.pk}/{action}", **filled)


def _login(w: World) -> Target:
    # A fresh browser each time: a signed-in one is sent on from the sign-in page.
    w.clients.pop("login", None)
    user = w.outsider
    return Target(w.client("login", browser), "/studio/login/", filled={"username": user.username, "password": "pw"})


def _logout(w: World) -> Target:
    # A fresh, signed-in browser each time: a signed-out one has no sign-out button.
    w.clients.pop("logout", None)
    return Target(w.client("logout", lambda: signed_in(w.owner)), "/studio/", action="/studio/logout/")


def _reset_confirm(w: World) -> Target:
    # A fresh link each time: a changed password spends the last one.
    user = w.outsider
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(User.objects.get(pk=user.pk))
    password = f"Fuzz-{uuid.uuid4().hex}"
    filled = {"new_password1": password, "new_password2": password}
    return Target(w.client("reset", browser), f"/studio/reset/{uid}/{token}/", filled=filled)


def _invitation_answer(kind: str) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        invitation = w.invitation_to_outsider()
        client = w.client("outsider", lambda: signed_in(w.outsider))
        return Target(client, "/studio/invitations/", action=f"/studio/invitations/{invitation.tenant_id}/{kind}")

    return target


def _upload_photos(w: World) -> Target:
    target = _on_event_page("photos")(w)
    target.files = {"images": ("photo.png", selfie())}
    return target


def _product_row(action: str, **filled: Any) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        product = w.shop.print
        return Target(
            w.member_client(),
            _event_page(w),
            action=f"/studio/events/{w.shop.event.pk}/products/{product.pk}/{action}",
            filled={f"product-{product.pk}-{name}": value for name, value in filled.items()},
        )

    return target


def _events(w: World) -> Target:
    # A new title each time: an accepted form takes the address (slug) made of it.
    return _studio(lambda w: "/studio/events/", title=f"Run {uuid.uuid4().hex[:8]}", date=str(date(2030, 6, 1)))(w)


def _invite(w: World) -> Target:
    return _studio(lambda w: "/studio/members/", email=f"new-{uuid.uuid4().hex[:8]}@example.test")(w)


def _event_products(w: World) -> Target:
    target = _on_event_page("products")(w)
    # A new size each time: the same print twice is refused (an accepted form is a new product).
    target.filled = {
        "kind": "print",
        "photo": str(w.shop.photo.pk),
        "size": f"S{uuid.uuid4().hex[:6]}",
        "stock_quantity": "5",
    }
    return target


def _announcements(w: World) -> Target:
    w.shop  # the form offers the studio's events: it has none without one
    return _studio(lambda w: "/studio/announcements/", title="Hello", body="Photos are online.")(w)


def _member_role(w: World) -> Target:
    member = w.a_member()
    return Target(w.member_client(), "/studio/members/", action=f"/studio/members/{member.pk}/role")


def _member_remove(w: World) -> Target:
    member = w.a_member()
    return Target(w.member_client(), f"/studio/members/{member.pk}/remove")


def _invitation_row(kind: str) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        invitation = w.an_invitation(expired=kind == "renew")
        action = f"/studio/members/invitations/{invitation.pk}/{kind}"
        return Target(w.member_client(), "/studio/members/", action=action)

    return target


def _sale(kind: str, **filled: Any) -> Callable[[World], Target]:
    def target(w: World) -> Target:
        sale = w.a_sale(kind)
        page = f"/studio/sales/{sale}/"
        return Target(w.member_client(), page, action=f"{page}{kind}", filled=filled)

    return target


def _payout_request(w: World) -> Target:
    w.with_wallet(w.member(w.caller))  # every member has a wallet of their own to be paid from
    _payout_requests_run()
    return Target(w.member_client(), "/studio/wallet/", action="/studio/wallet/payout-request")


def _payout_requests_run() -> None:
    """End every payout request sent so far as its run does when it finds nothing to pay: the
    consumer's inbox row for its message. A request in flight takes the form off the wallet page
    (a second is refused), and the fuzz sends the form again and again; what a run pays is
    tests/payouts' to check, not the form's."""
    with system_context("test: fuzz payout requests"):
        messages = AuditLog.objects.filter(action=REQUEST_AUDIT_ACTION, data__has_key="message_id")
        for message_id in messages.values_list("data__message_id", flat=True):
            InboxEntry.objects.get_or_create(consumer=WALLET_REQUEST_CONSUMER, message_id=message_id)


FORMS: dict[str, Form] = {
    # the shop
    "shop:event": Form(_unlock, not_echoed=frozenset({"code"})),
    "shop:photo": Form(lambda w: Target(_shopper(w), w.shop_url(w.shop.event.slug, "photos", w.shop.photo.pk))),
    "shop:cart-update": Form(lambda w: _cart_target(w, "update")),
    "shop:cart-remove": Form(lambda w: _cart_target(w, "remove")),
    "shop:checkout-create": Form(_checkout),
    "shop:checkout-refill": Form(_refill),
    "shop:orders": Form(lambda w: Target(_shopper(w), w.shop_url("orders"), filled={"email": "ann@example.test"})),
    "shop:find-me": Form(
        lambda w: Target(
            _shopper(w), w.shop_url(w.shop.event.slug, "find-me").rstrip("/"), files={"image": ("me.png", selfie())}
        ),
        accepted=frozenset(),  # a search writes nothing, found or not
    ),
    # the attendee pages
    "attendee-read": Form(_attendee("", "read", lambda w: w.unread_notification())),
    "attendee-unsubscribe": Form(
        _attendee("unsubscribe", "", lambda w: w.attendee_set(unsubscribed_at=None)), accepted=frozenset({200})
    ),
    "attendee-new-link": Form(_attendee("", "new-link")),
    "attendee-resubscribe": Form(
        _attendee("", "resubscribe", lambda w: w.attendee_set(unsubscribed_at=timezone.now()))
    ),
    "attendee-dropin": Form(_attendee("drop-in", "drop-in")),
    "attendee-dropin-delete": Form(_dropin_delete),
    "attendee-dropin-alerts": Form(_attendee("drop-in", "drop-in/alerts")),
    # the studio: signing in, choosing a studio, invitations
    "studio:login": Form(_login, not_echoed=frozenset({"password"})),
    "studio:logout": Form(_logout),
    "studio:choose": Form(
        lambda w: Target(
            w.client("several", lambda: signed_in(w.several_studios_user)),
            "/studio/choose/",
            filled={"studio": str(w.org.pk)},
        )
    ),
    "studio:invitation-accept": Form(_invitation_answer("accept")),
    "studio:invitation-decline": Form(_invitation_answer("decline")),
    "studio:password-reset": Form(
        lambda w: Target(w.client("reset", browser), "/studio/password-reset/", filled={"email": w.outsider.email})
    ),
    "studio:password-reset-confirm": Form(_reset_confirm, not_echoed=frozenset({"new_password1", "new_password2"})),
    # the studio dashboard
    "studio:settings": Form(_studio(lambda w: "/studio/settings/"), roles=OWNERS),
    "studio:events": Form(_events, roles=OWNERS),
    "studio:event-edit": Form(_on_event_page("edit"), roles=OWNERS),
    "studio:event-upload": Form(_upload_photos, roles=UPLOADERS),
    "studio:event-products": Form(_event_products, roles=OWNERS),
    "studio:event-downloads-offer": Form(_on_event_page("products/downloads"), roles=OWNERS),
    "studio:event-prices": Form(_on_event_page("prices", download="9.50"), roles=OWNERS),
    "studio:event-prices-currency": Form(_on_event_page("prices/currency", currency="USD", confirm="on"), roles=OWNERS),
    "studio:product-active": Form(_product_row("active"), roles=OWNERS),
    "studio:product-restock": Form(_product_row("restock", add_quantity="3"), roles=OWNERS),
    "studio:event-attendees": Form(
        _studio(lambda w: f"/studio/events/{w.shop.event.pk}/attendees", lines="bob@example.test, Bob"),
        roles=SALES_AND_ATTENDEES,
    ),
    "studio:attendee-reset-link": Form(
        _studio(
            lambda w: f"/studio/events/{w.shop.event.pk}/attendees",
            lambda w: f"/studio/events/{w.shop.event.pk}/attendees/{w.attendee.pk}/reset-link",
        ),
        roles=SALES_AND_ATTENDEES,
    ),
    "studio:photo-withdraw": Form(
        _studio(
            lambda w: f"/studio/events/{w.shop.event.pk}/photos/{w.a_photo_to_withdraw().pk}/withdraw",
            reason="The runner asked us to.",
        ),
        roles=OWNERS,
    ),
    "studio:sale-ship": Form(_sale("ship", carrier="DHL", tracking_reference="JD0001"), roles=SALES_AND_ATTENDEES),
    "studio:sale-refund": Form(_sale("refund", confirm="on"), roles=OWNERS),
    "studio:payout-request": Form(_payout_request, roles=EVERY_MEMBER),
    "studio:destination": Form(
        _studio(lambda w: "/studio/wallet/", lambda w: "/studio/wallet/destinations", destination="bank-1"),
        roles=OWNERS,
    ),
    "studio:announcements": Form(_announcements, roles=SALES_AND_ATTENDEES),
    "studio:announcement-send": Form(
        _studio(
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/",
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/send",
        ),
        roles=SALES_AND_ATTENDEES,
    ),
    "studio:announcement-edit": Form(
        _studio(
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/",
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/edit",
            title="Photos are online",
        ),
        roles=SALES_AND_ATTENDEES,
    ),
    "studio:announcement-delete": Form(
        _studio(
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/",
            lambda w: f"/studio/announcements/{w.an_announcement().pk}/delete",
        ),
        roles=SALES_AND_ATTENDEES,
    ),
    "studio:api-keys": Form(_studio(lambda w: "/studio/api-keys/", name="Storefront"), roles=OWNERS),
    "studio:api-key-revoke": Form(_studio(lambda w: f"/studio/api-keys/{w.an_api_key().pk}/revoke"), roles=OWNERS),
    "studio:members": Form(_invite, roles=OWNERS),
    "studio:member-role": Form(_member_role, roles=OWNERS),
    "studio:member-remove": Form(_member_remove, roles=OWNERS),
    "studio:invitation-withdraw": Form(_invitation_row("withdraw"), roles=OWNERS),
    "studio:invitation-renew": Form(_invitation_row("renew"), roles=OWNERS),
}


# --- the tests --------------------------------------------------------------------------


def test_every_post_form_is_fuzzed() -> None:
    # given: every route of the web UI whose view takes POST
    routes = post_routes()
    # then: each has its form here (a new form is fuzzed too), and each entry is such a route
    assert set(routes) - set(FORMS) == set(), "POST routes without a fuzzed form"
    assert set(FORMS) - set(routes) == set(), "fuzzed forms of routes that take no POST (or are gone)"


@pytest.fixture
def fuzz_settings(settings: Any) -> None:
    """Limits out of the way (each has its own tests): the fuzz is of what the forms read."""
    for name in (
        "SHOP_ACCESS_CODE_RATE",
        "SHOP_ACCESS_CODE_EVENT_RATE",
        "SHOP_FINDME_SESSION_RATE",
        "SHOP_FINDME_ADDRESS_RATE",
        "SHOP_ORDER_LOOKUP_ADDRESS_RATE",
        "SHOP_ORDER_LOOKUP_EMAIL_RATE",
        "SHOP_CHECKOUT_ADDRESS_RATE",
        "SHOP_CHECKOUT_SESSION_RATE",
        "STUDIO_LOGIN_RATE",
        "STUDIO_LOGIN_ADDRESS_RATE",
        "STUDIO_PASSWORD_RESET_EMAIL_RATE",
        "STUDIO_PASSWORD_RESET_ADDRESS_RATE",
        "DROPIN_SELFIE_PAGE_RATE",
    ):
        setattr(settings, name, "1000000/min")
    settings.SHOP_OPEN_CHECKOUTS_PER_SESSION = 1_000_000
    settings.SHOP_NETWORK_PRINT_HOLD_PERCENT = 100


def _pick(forms: list[HtmlForm], action: str) -> HtmlForm | None:
    wanted = urlsplit(action).path
    return next((f for f in forms if urlsplit(f.action).path == wanted), None)


def as_received(text: str) -> str:
    """What the server reads of `text` as sent (`_bytes`): an unencodable code point is U+FFFD."""
    return _bytes(text).decode("utf-8", "replace")


def check_escaped(response: Any, sent: Submission, form: Form, action: str, *, parsed: bool) -> None:
    """No page holds MARKER unescaped; a re-rendered form shows each text field as typed, escaped
    (when the body was `parsed`: one sent as text or cut short has no fields to show)."""
    if not response.get("Content-Type", "").startswith("text/html"):
        return
    body = response.content.decode()
    assert MARKER not in body, f"typed text is on the page unescaped: {sent.describe()}"
    again = _pick(forms_on(body, response.request["PATH_INFO"]), action)
    if again is None or not parsed:
        return
    for name, values in sent.typed.items():
        shown = again.fields.get(name)
        if shown is None or shown.kind not in TEXT_KINDS or name in form.not_echoed or MARKER not in values[-1]:
            continue
        typed = as_received(values[-1])  # of a repeated field, a form reads the last value
        # A browser sends at most the field's maxlength: a page may cut what is longer.
        cut = shown.max_length is not None and len(typed) > shown.max_length
        assert len(shown.values) == 1, f"{name!r} is rendered {len(shown.values)} times"
        assert shown.values[0] == typed or (cut and typed.startswith(shown.values[0]) and shown.values[0]), (
            f"the re-rendered form does not show what was typed in {name!r}: {sent.describe()}"
        )


def page_form(target: Target) -> HtmlForm:
    """The form `target` sends, as its page renders it (after the page's redirects)."""
    page = target.client.get(target.page, follow=True)
    assert page.status_code == 200, (target.page, page.status_code)
    page_url = page.request["PATH_INFO"]
    html_form = _pick(forms_on(page.content.decode(), page_url), target.action or page_url)
    assert html_form is not None, f"no form posting to {target.action or page_url} on {target.page}"
    return html_form


def post(client: Client, path: str, query: str, sent: Submission, *, form: HtmlForm, how: str, token: str) -> Any:
    """Send `sent` to `path` with the query string `query`, encoded as `how` says (BODIES). The
    token goes in its header too, as a script would send it: a body Django does not parse reaches
    the view rather than the CSRF failure page."""
    body, content_type = encode(sent, multipart="multipart" in form.enctype, how=how)
    return client.post(path, data=body, content_type=content_type, HTTP_X_CSRFTOKEN=token, QUERY_STRING=query)


def local_redirect(response: Any, path: str, described: str) -> str | None:
    """Where a redirect leads (a path and query of this site; it must be one), None for no redirect."""
    location = response.get("Location")
    if location is None:
        return None
    assert is_local(location, path), f"{response.status_code} to {location!r}, off this site: {described}"
    landing = urlsplit(urljoin(f"http://testserver{path}", location))
    return urlunsplit(("", "", landing.path, landing.query, ""))


def check_landing(client: Client, url: str, described: str) -> None:
    """The page an accepted form leads to opens, and holds no typed HTML unescaped."""
    landing = client.get(url)
    assert landing.status_code < 500, (url, landing.status_code, described)
    if landing.get("Content-Type", "").startswith("text/html"):
        assert MARKER not in landing.content.decode(), f"typed text is on {url} unescaped: {described}"


def callers_of(name: str, form: Form) -> tuple[str, ...]:
    """Who sends `name`'s form: each member role that may (a studio dashboard form), each of
    SHOP_CALLERS (a shop or attendee form), else whoever its target names ("")."""
    if form.roles:
        return tuple(role for role in ROLES if role in form.roles)
    if name.startswith(("shop:", "attendee")):
        return SHOP_CALLERS
    return ("",)


def refused_callers(form: Form) -> list[str]:
    """Who may not send a dashboard form: every other member role, an account in no studio, and
    a browser signed in nowhere."""
    return [*(role for role in ROLES if role not in form.roles), NO_STUDIO, ANONYMOUS] if form.roles else []


# The studio's forms that are not its dashboard's: no member role is needed to send them.
SIGN_IN_FORMS = frozenset(
    {
        "studio:login",
        "studio:logout",
        "studio:choose",
        "studio:invitation-accept",
        "studio:invitation-decline",
        "studio:password-reset",
        "studio:password-reset-confirm",
    }
)


def test_every_dashboard_form_names_its_roles() -> None:
    # given: the studio's forms
    studio = {name for name in FORMS if name.startswith("studio:")}
    # then: each dashboard form names the roles that may send it, and no other form does
    assert {name for name in studio - SIGN_IN_FORMS if not FORMS[name].roles} == set()
    assert {name for name in FORMS if FORMS[name].roles} == studio - SIGN_IN_FORMS


def fuzz_settings_for(examples: int) -> Callable[[Any], Any]:
    return hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        # No explain phase: it replays against a world the earlier examples changed.
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Submissions per form for its first caller; each further caller, and the refused callers
# together, send half as many (the same plans, derandomized), to keep the default run short.
MORE_EXAMPLES = max(2, EXAMPLES // 2)


def fuzz_as_caller(form: Form, world: World, tables: Tables, *, examples: int, caller: str, first: bool) -> None:
    """Fuzz `form` as `caller` sends it ("": as its target says; see the module's docstring for
    what is checked), OFF_SITE_PLANS first for the `first` caller."""
    world.caller = caller or "owner"

    def fuzz(plan: Plan) -> None:
        # given: the page, as the caller's browser gets it, and its form
        target = form.target(world)
        html_form = page_form(target)
        # when: it is sent, changed, to its action with a changed query string
        sent = submission(plan, html_form, target.filled, target.files)
        path, query = with_query(html_form.action, plan.query, html_form)
        described = f"as {caller or 'its target says'}: {sent.describe()} query={query[:200]!r}"
        cookie = target.client.cookies.get("csrftoken")
        token = dict(sent.pairs).get("csrfmiddlewaretoken") or (cookie.value if cookie else "")
        before = tables.fingerprint()
        response = post(target.client, path, query, sent, form=html_form, how=plan.body, token=token)
        # then: never a server error nor a redirect off the site; a role that may send the form is
        # not refused; a refusal writes nothing; what was typed comes back escaped
        assert response.status_code < 500, (response.status_code, described)
        assert b"CSRF verification failed" not in response.content, "the fuzz does not get past the CSRF check"
        assert not (form.roles and response.status_code == 403), f"refused a role that may send it, {described}"
        landing = local_redirect(response, path, described)
        if response.status_code not in form.accepted:
            after = tables.fingerprint()
            changed = sorted(table for table in after if after[table] != before[table])
            assert not changed, f"refused ({response.status_code}) but wrote to {changed}, {described}"
        check_escaped(response, sent, form, html_form.action, parsed=plan.body == "form")
        if landing is not None and response.status_code in form.accepted:
            check_landing(target.client, landing, described)

    for plan in OFF_SITE_PLANS if first else []:
        fuzz = example(plan=plan)(fuzz)
    fuzz_settings_for(examples)(given(plan=PLANS)(fuzz))()


def django_refuses(path: str, body: bytes, content_type: str) -> bool:
    """Whether Django refuses to read this body (too many fields, too large, a broken multipart
    body or part header): the CSRF check reads it before any view, and answers 400 (or 413)."""
    request = RequestFactory().post(path, data=body, content_type=content_type)
    try:
        request.POST  # parsed on first use
    except (SuspiciousOperation, MultiPartParserError):
        return True
    return False


def fuzz_as_refused(form: Form, world: World, tables: Tables, *, examples: int) -> None:
    """Send `form`, as its page renders it for an owner and changed, as every refused caller: a
    member is refused (403), a browser signed in nowhere sent to sign in (302), and nothing is
    written; a refused member's page does not offer the form."""
    world.caller = "owner"
    callers = refused_callers(form)
    target = form.target(world)
    # Made before any fingerprint: signing in writes, and so does the first use in a process of
    # each reason for the system context (its audit row), which the pages below make.
    clients = {caller: world.refused_client(caller) for caller in callers}
    for caller, client in clients.items():
        page = client.get(target.page)
        if caller in ROLES and page.status_code == 200:
            offered = _pick(forms_on(page.content.decode(), target.page), target.action or target.page)
            assert offered is None, f"the page offers {caller} a form only {sorted(form.roles)} may send"

    @fuzz_settings_for(examples)
    @given(plan=PLANS)
    def fuzz(plan: Plan) -> None:
        # given: the form as an owner's page renders it, changed
        target = form.target(world)
        html_form = page_form(target)
        sent = submission(plan, html_form, target.filled, target.files)
        path, query = with_query(html_form.action, plan.query, html_form)
        described = f"{sent.describe()} query={query[:200]!r}"
        before = tables.fingerprint()
        for caller, client in clients.items():
            # when: a caller without the role sends it (with their own CSRF token)
            token = client.cookies["csrftoken"].value
            theirs = Submission(
                pairs=[(n, token if n == "csrfmiddlewaretoken" else v) for n, v in sent.pairs],
                files=sent.files,
                typed=sent.typed,
            )
            body, content_type = encode(theirs, multipart="multipart" in html_form.enctype, how=plan.body)
            response = client.post(
                path, data=body, content_type=content_type, HTTP_X_CSRFTOKEN=token, QUERY_STRING=query
            )
            # then: a member is refused (403), a browser signed in nowhere sent to sign in; a body
            # Django refuses to read is refused before any view (400, 413)
            status = response.status_code
            expected = 302 if caller == ANONYMOUS else 403
            unread = status in (400, 413) and django_refuses(path, body, content_type)
            assert status == expected or unread, f"{status} as {caller} (refused role): {described}"
            landing = local_redirect(response, path, described)
            if status == 302:
                assert landing is not None and urlsplit(landing).path == "/studio/login/", (landing, described)
        # then: nothing is written
        after = tables.fingerprint()
        changed = sorted(table for table in after if after[table] != before[table])
        assert not changed, f"refused roles but wrote to {changed}: {described}"

    fuzz()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
@pytest.mark.parametrize("name", sorted(FORMS))
def test_form_refuses_bad_input_cleanly(name: str, tenant_a: TenantBundle, fuzz_settings: None) -> None:
    form = FORMS[name]
    world = World(tenant_a)
    tables = Tables()
    try:
        # Every caller that may send the form, the first with EXAMPLES submissions
        for index, caller in enumerate(callers_of(name, form)):
            examples = EXAMPLES if index == 0 else MORE_EXAMPLES
            fuzz_as_caller(form, world, tables, examples=examples, caller=caller, first=index == 0)
        # and a dashboard form as each caller that may not.
        if form.roles:
            fuzz_as_refused(form, world, tables, examples=MORE_EXAMPLES)
    finally:
        tables.close()
