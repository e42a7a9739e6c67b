"""`manage.py text_audit`: stored text written before its column's rule (`STORED_TEXT`) is found in
every studio, reported one line per value, and with `--clean` display text is rewritten without
the refused characters (audited) while identifiers, keys and append-only rows are only reported.
Rows are seeded directly (factories, ORM, the ledger's service), past every input rule, and the
command runs as the runtime role, under row-level security."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.catalog.models import Event, Price, Product, ProductKind
from apps.core.text import STORED_TEXT
from apps.ledger.models import LedgerAccount, LedgerEvent, LedgerEventKey
from apps.ledger.services import EntryIn, ledger_debits_append
from apps.notifications.models import Announcement, Attendee, Notification
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey, AuditLog, Organization
from tests.factories.catalog import EventFactory, PriceFactory, ProductFactory
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db(transaction=True)

TITLE_REFUSED = "Control characters (including text-direction overrides) are not allowed."
BODY_REFUSED = "Control characters (including text-direction overrides) are not allowed; line breaks and tabs are."
TEXT_REFUSED = "Control characters are not allowed."
IDENTIFIER_REFUSED = "Only printable characters: no control, format or line-break characters."
LINE = re.compile(r"^(?P<table>\w+) id=(?P<id>\d+) tenant=(?P<tenant>\d+) (?P<column>\w+): (?P<rest>.*)$")


@dataclass
class Seeded:
    org: Organization
    event: Event
    announcement: Announcement
    attendee: Attendee
    notification: Notification
    api_key: ApiKey
    product: Product
    price: Price
    account: LedgerAccount
    ledger_event: LedgerEvent


def seed(name: str = "Studio\x07North") -> Seeded:
    """A studio whose display text and identifiers each hold a character their rule refuses, next
    to rows that follow it."""
    org = OrganizationFactory(name=name)
    event = EventFactory(tenant=org, title="Gala\u202e night")
    EventFactory(tenant=org, title="Marathon 2026")
    product = ProductFactory(event=event, kind=ProductKind.PRINT, size="A4\u200b")
    price = PriceFactory(price_list__event=event, kind=ProductKind.PRINT, size="A4\u200b")
    with tenant_context(org.pk):
        announcement = Announcement.objects.create(
            tenant=org, event=event, title="News\x1b[31m", body="Line one\rLine two\u2066\r\nthird\tline"
        )
        attendee = Attendee.objects.create(tenant=org, event=event, email=f"ann@{org.slug}.test", name="Ann\nLee")
        notification = Notification.objects.create(
            tenant=org,
            attendee=attendee,
            kind=Notification.Kind.ANNOUNCEMENT,
            dedupe_key=f"announcement:{announcement.pk}",
            title=announcement.title,
            body=announcement.body,
        )
        api_key = ApiKey.objects.create(tenant=org, name="ci\u202ekey", prefix=f"p{org.pk}", key_hash=f"{org.pk:064d}")
    account = make_account(org, client_id="pos\u00a01")
    entry = EntryIn(
        account_id=account.pk,
        amount_minor=10,
        currency="EUR",
        idempotency_key="k\x1b",
        client_id="till\u202e2",
        reference="inv\x1b42",
    )
    with tenant_context(org.pk):
        ledger_debits_append(tenant=org, entries=[entry])  # the service: the API's rules are not its own
    with system_context("test: text audit"):
        ledger_event = LedgerEvent.objects.get(account_id=account.pk)
    return Seeded(org, event, announcement, attendee, notification, api_key, product, price, account, ledger_event)


def run(*args: str) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("text_audit", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue().splitlines(), err.getvalue()


def findings(lines: list[str]) -> dict[tuple[str, int, str], str]:
    """(table, id, column) -> the rest of the line, for every finding line."""
    found = {}
    for line in lines:
        if match := LINE.match(line):
            found[(match["table"], int(match["id"]), match["column"])] = match["rest"]
    return found


def stored(s: Seeded) -> dict[str, str]:
    with system_context("test: text audit"):
        return {
            "org": Organization.objects.get(pk=s.org.pk).name,
            "event": Event.objects.get(pk=s.event.pk).title,
            "announcement.title": Announcement.objects.get(pk=s.announcement.pk).title,
            "announcement.body": Announcement.objects.get(pk=s.announcement.pk).body,
            "attendee": Attendee.objects.get(pk=s.attendee.pk).name,
            "notification.title": Notification.objects.get(pk=s.notification.pk).title,
            "notification.body": Notification.objects.get(pk=s.notification.pk).body,
            "api_key": ApiKey.objects.get(pk=s.api_key.pk).name,
            "product": Product.objects.get(pk=s.product.pk).size,
            "price": Price.objects.get(pk=s.price.pk).size,
            "account": LedgerAccount.objects.get(pk=s.account.pk).client_id,
            "event.client_id": LedgerEvent.objects.get(pk=s.ledger_event.pk).client_id,
            "key": LedgerEventKey.objects.get(event_id=s.ledger_event.pk).idempotency_key,
            "reference": LedgerEvent.objects.get(pk=s.ledger_event.pk).reference,
        }


AS_SEEDED = {
    "org": "Studio\x07North",
    "event": "Gala\u202e night",
    "announcement.title": "News\x1b[31m",
    "announcement.body": "Line one\rLine two\u2066\r\nthird\tline",
    "attendee": "Ann\nLee",
    "notification.title": "News\x1b[31m",
    "notification.body": "Line one\rLine two\u2066\r\nthird\tline",
    "api_key": "ci\u202ekey",
    "product": "A4\u200b",
    "price": "A4\u200b",
    "account": "pos\u00a01",
    "event.client_id": "till\u202e2",
    "key": "k\x1b",
    "reference": "inv\x1b42",
}
CLEANED = {
    **AS_SEEDED,
    "org": "StudioNorth",
    "event": "Gala night",
    "announcement.title": "News[31m",
    "announcement.body": "Line one\nLine two\r\nthird\tline",
    "attendee": "Ann Lee",
    "notification.title": "News[31m",
    "notification.body": "Line one\nLine two\r\nthird\tline",
    "api_key": "cikey",
}


def clean_audit_rows() -> list[AuditLog]:
    with system_context("test: text audit"):
        return list(AuditLog.objects.filter(action="stored_text.clean").order_by("id"))


def test_the_audit_reports_every_offending_value_once_and_exits_1():
    # given: a studio with offending text in every kind of column, and one whose text is fine
    s = seed()
    OrganizationFactory(name="Fine Studio")
    # when
    code, lines, progress = run()
    # then: one line per offending value, naming table, id, tenant, column, problem and value
    found = findings(lines)
    t = s.org.pk
    assert found == {
        ("tenancy_organization", t, "name"): f"{TITLE_REFUSED} 'Studio\\x07North'",
        ("tenancy_apikey", s.api_key.pk, "name"): f"{TITLE_REFUSED} 'ci\\u202ekey'",
        ("catalog_event", s.event.pk, "title"): f"{TITLE_REFUSED} 'Gala\\u202e night'",
        ("catalog_product", s.product.pk, "size"): f"{TEXT_REFUSED} 'A4\\u200b'",
        ("catalog_price", s.price.pk, "size"): f"{TEXT_REFUSED} 'A4\\u200b'",
        ("notifications_attendee", s.attendee.pk, "name"): f"{TITLE_REFUSED} 'Ann\\nLee'",
        ("notifications_announcement", s.announcement.pk, "title"): f"{TITLE_REFUSED} 'News\\x1b[31m'",
        ("notifications_announcement", s.announcement.pk, "body"): (
            f"{BODY_REFUSED} 'Line one\\rLine two\\u2066\\r\\nthird\\tline'"
        ),
        ("notifications_notification", s.notification.pk, "title"): f"{TITLE_REFUSED} 'News\\x1b[31m'",
        ("notifications_notification", s.notification.pk, "body"): (
            f"{BODY_REFUSED} 'Line one\\rLine two\\u2066\\r\\nthird\\tline'"
        ),
        ("ledger_ledgeraccount", s.account.pk, "client_id"): f"{IDENTIFIER_REFUSED} 'pos\\xa01'",
        ("ledger_ledgerevent", s.ledger_event.pk, "client_id"): f"{IDENTIFIER_REFUSED} 'till\\u202e2'",
        ("ledger_ledgerevent", s.ledger_event.pk, "reference"): f"{TEXT_REFUSED} 'inv\\x1b42'",
        ("ledger_ledgereventkey", found_key_id(s), "idempotency_key"): f"{IDENTIFIER_REFUSED} 'k\\x1b'",
    }
    assert all(f"tenant={t} " in line for line in lines if LINE.match(line))
    assert lines[-1].startswith("text_audit: ") and f"14 value(s) break their rule (tenant {t}: 14)" in lines[-1]
    assert "catalog_event: 2 row(s) scanned" in progress
    # and: exit status 1, nothing written
    assert code == 1
    assert stored(s) == AS_SEEDED
    assert clean_audit_rows() == []


def found_key_id(s: Seeded) -> int:
    with system_context("test: text audit"):
        return LedgerEventKey.objects.get(event_id=s.ledger_event.pk).pk


def test_dry_run_shows_what_clean_would_change_and_writes_nothing():
    # given
    s = seed()
    # when
    code, lines, _ = run("--clean", "--dry-run")
    # then: the display text's lines say what it would become; identifiers and append-only rows
    # would be left
    found = findings(lines)
    assert found[("catalog_event", s.event.pk, "title")].endswith("-> would clean: 'Gala night'")
    assert found[("notifications_announcement", s.announcement.pk, "body")].endswith(
        "-> would clean: 'Line one\\nLine two\\r\\nthird\\tline'"
    )
    assert found[("ledger_ledgeraccount", s.account.pk, "client_id")].endswith("-> left: an identifier, reported only")
    assert found[("ledger_ledgerevent", s.ledger_event.pk, "reference")].endswith(
        "-> left: append-only table, reported only"
    )
    assert "would clean 8, left 6" in lines[-1]
    assert code == 1
    assert stored(s) == AS_SEEDED
    assert clean_audit_rows() == []


def test_clean_rewrites_display_text_audits_each_change_and_leaves_identifiers():
    # given
    s = seed()
    # when
    code, lines, _ = run("--clean")
    # then: display text lost its refused characters; identifiers, keys, print sizes (they pair a
    # product with its price) and the ledger's reference (append-only) are as stored
    assert stored(s) == CLEANED
    assert "cleaned 8, left 6" in lines[-1]
    assert code == 1  # the identifiers and the reference remain
    # and: one audit row per change, with the studio, the row and both values
    audits = clean_audit_rows()
    assert len(audits) == 8
    assert {(a.target_type, a.target_id, a.data["field"]) for a in audits} >= {
        ("event", str(s.event.pk), "title"),
        ("organization", str(s.org.pk), "name"),
    }
    event_audit = next(a for a in audits if a.target_type == "event")
    assert event_audit.tenant_id == s.org.pk and event_audit.actor_label == "cli:text_audit"
    assert event_audit.data == {"field": "title", "rule": "title", "old": "Gala\u202e night", "new": "Gala night"}
    # and: a second audit finds only what --clean leaves
    code, lines, _ = run()
    assert {(table, column) for table, _, column in findings(lines)} == {
        ("catalog_product", "size"),
        ("catalog_price", "size"),
        ("ledger_ledgeraccount", "client_id"),
        ("ledger_ledgerevent", "client_id"),
        ("ledger_ledgerevent", "reference"),
        ("ledger_ledgereventkey", "idempotency_key"),
    }
    assert code == 1


def test_a_clean_database_exits_0():
    # given: text that follows every rule (an attendee without a name among it)
    org = OrganizationFactory(name="Fine Studio")
    event = EventFactory(tenant=org, title="Marathon — finish line 🏃\u200d♀️")
    with tenant_context(org.pk):
        Attendee.objects.create(tenant=org, event=event, email="a@example.test", name="")
    make_account(org, client_id="Café Nord / till 2")
    # when
    code, lines, _ = run("--clean")
    # then
    assert code == 0
    assert findings(lines) == {}
    assert "0 value(s) break their rule (none); cleaned 0, left 0" in lines[-1]


def test_batches_walk_every_row_and_tenant_id_narrows_to_one_studio():
    # given: two studios, five events of the first of which three are offending
    first, second = OrganizationFactory(), OrganizationFactory()
    bad = [EventFactory(tenant=first, title=f"Race\u202e{n}").pk for n in range(3)]
    for n in range(2):
        EventFactory(tenant=first, title=f"Race {n}")
    EventFactory(tenant=second, title="Other\x07")
    # when: read two rows at a time, for the first studio only
    code, lines, progress = run("--tenant-id", str(first.pk), "--batch-size", "2")
    # then: every offending event of that studio, none of the other's, in three batches
    assert sorted(pk for table, pk, _ in findings(lines) if table == "catalog_event") == bad
    assert [line for line in progress.splitlines() if line.startswith("catalog_event:")] == [
        "catalog_event: 2 row(s) scanned",
        "catalog_event: 4 row(s) scanned",
        "catalog_event: 5 row(s) scanned",
    ]
    assert code == 1


def test_clean_leaves_a_value_it_cannot_clean_and_reports_why():
    # given: a title of nothing but an override, and a print size (which is never rewritten: it
    # pairs the product with its price) that, cleaned, would be another product's of the photo
    org = OrganizationFactory()
    lone = EventFactory(tenant=org, title="\u202e")
    sized = ProductFactory(event=EventFactory(tenant=org), kind=ProductKind.PRINT, size="A4")
    twin = ProductFactory(event=sized.event, photo=sized.photo, kind=ProductKind.PRINT, size="A4\u200b")
    # when
    code, lines, _ = run("--clean")
    # then: both are left as stored, and said so
    found = findings(lines)
    assert found[("catalog_event", lone.pk, "title")].endswith("-> left: nothing the rule of a title accepts remains")
    assert found[("catalog_product", twin.pk, "size")].endswith("-> left: a print size, reported only")
    with system_context("test: text audit"):
        assert Event.objects.get(pk=lone.pk).title == "\u202e"
        assert Product.objects.get(pk=twin.pk).size == "A4\u200b"
    assert clean_audit_rows() == []
    assert code == 1


def test_dry_run_alone_is_refused():
    with pytest.raises(CommandError, match="--dry-run goes with --clean"):
        call_command("text_audit", "--dry-run", stdout=io.StringIO(), stderr=io.StringIO())


def test_every_stored_text_column_names_a_real_text_field():
    from django.apps import apps

    for column in STORED_TEXT:
        field = apps.get_model(column.model)._meta.get_field(column.field)
        assert field.get_internal_type() in ("CharField", "TextField"), column
