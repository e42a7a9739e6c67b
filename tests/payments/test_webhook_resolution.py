"""An operator resolves webhook events that failed for good (README runbook "Webhook event
failed"): the admin action and `manage.py webhooks_resolve` record what was done, once, audited;
a resolved event keeps its error, is no longer counted as failed on /metrics, and is neither
replayed nor processed again."""

from __future__ import annotations

import importlib
import json
import threading
import uuid
from collections.abc import Iterator
from io import StringIO
from types import ModuleType, SimpleNamespace
from typing import Any, cast
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.payments import services as payment_services
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus, ProviderError
from apps.payments.providers.sandbox import build_event
from apps.payments.resolution import ResolveResult, WebhookResolutionRefused, webhook_events_resolve
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog, User
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, pending_topics, sandbox_paid
from tests.factories.tenancy import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

CHANGELIST = "/admin/payments/webhookevent/"
NOTE = "refunded sbx_other in the sandbox dashboard"
OPEN_FAILED = 'darkroom_webhook_events_open{provider="sandbox",status="failed"}'


def event_of(pk: uuid.UUID) -> WebhookEvent:
    with system_context("test"):
        return WebhookEvent.objects.get(pk=pk)


def resolutions() -> list[AuditLog]:
    with system_context("test"):
        return list(AuditLog.objects.filter(action="webhook_event.resolve").order_by("pk"))


def a_session_mismatch(tenant: Any, shop: Any) -> tuple[WebhookEvent, str]:
    """A checkout of `tenant` awaiting payment, and a paid event naming it but another sandbox
    session, processed: failed for good (SessionMismatch). Returns the event and checkout id."""
    checkout_id = post_checkout(tenant.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver(
        [
            build_event(
                status=PaymentStatus.PAID,
                reference="sbx_other",
                checkout_id=checkout_id,
                amount_minor=900,
                currency="EUR",
            )
        ]
    )
    drain_outbox()
    with system_context("test"):
        event = WebhookEvent.objects.get(reference="sbx_other")
    assert event.status == "failed" and event.error.startswith("SessionMismatch:")
    return event, checkout_id


def a_processed_payment(tenant: Any, shop: Any) -> WebhookEvent:
    checkout_id = post_checkout(tenant.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    with system_context("test"):
        event = WebhookEvent.objects.get(checkout_id=checkout_id, reference=f"sbx_{checkout_id}")
    assert event.status == "processed"
    return event


def superuser_client() -> tuple[Client, User]:
    user = cast(User, UserFactory(is_staff=True, is_superuser=True))
    client = Client()
    client.force_login(user)
    return client, user


def scrape() -> str:
    return Client().get("/metrics").content.decode()


def resolve(ids: list[uuid.UUID], note: str = NOTE, **kwargs: Any) -> ResolveResult:
    with system_context("test: resolve"):
        return webhook_events_resolve(ids=ids, note=note, actor_label="ops:alice", **kwargs)


# --- the admin action -----------------------------------------------------------------------


def test_resolving_a_failed_event_in_the_admin_asks_for_a_note_then_records_it_once_and_audits_it(tenant_a, shop):
    # given: a SessionMismatch failed for good, counted as failed on /metrics, and a platform admin
    event, _ = a_session_mismatch(tenant_a, shop)
    assert f"{OPEN_FAILED} 1.0" in scrape().splitlines()
    client, admin_user = superuser_client()
    # when: the admin picks "Mark the selected failed events resolved"
    page = client.post(CHANGELIST, {"action": "resolve", "_selected_action": [str(event.pk)]})
    # then: a page naming the event and its error asks what was done; nothing changed yet
    assert page.status_code == 200
    assert b"SessionMismatch" in page.content and event.event_id.encode() in page.content
    assert b'name="note"' in page.content
    assert event_of(event.pk).status == "failed" and resolutions() == []
    # when: the admin answers with a note
    response = client.post(
        CHANGELIST,
        {"action": "resolve", "_selected_action": [str(event.pk)], "apply": "1", "note": f"  {NOTE}  "},
        follow=True,
    )
    # then: resolved, with who, when and the note; the error and traceback kept for the record
    assert response.status_code == 200
    assert "Resolved 1 failed event(s); 0 skipped (not failed)." in [str(m) for m in response.context["messages"]]
    resolved = event_of(event.pk)
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == (
        "resolved",
        f"admin:{admin_user.get_username()}",
        NOTE,
    )
    assert resolved.resolved_at is not None and resolved.resolved_at <= timezone.now()
    assert resolved.error == event.error and resolved.traceback == event.traceback
    # and: one audit row naming the admin, the event, its provider, its error and the note (the
    # event's tenant: none, its failed processing rolled the stamp back)
    (audit,) = resolutions()
    assert (audit.actor_user_id, audit.tenant_id, audit.target_type, audit.target_id) == (
        admin_user.pk,
        event.tenant_id,
        "webhook_event",
        str(event.pk),
    )
    assert audit.data["provider"] == "sandbox" and audit.data["event_id"] == event.event_id
    assert audit.data["error"].startswith("SessionMismatch:") and audit.data["note"] == NOTE
    # and: /metrics no longer counts it as failed (the alert clears)
    assert OPEN_FAILED not in scrape()
    # and: the list filter shows it among the resolved ones, not the failed ones
    assert str(event.pk) in client.get(CHANGELIST, {"status__exact": "resolved"}).content.decode()
    assert str(event.pk) not in client.get(CHANGELIST, {"status__exact": "failed"}).content.decode()


@pytest.mark.parametrize("note", ["", "   \n "])
def test_the_admin_refuses_a_resolution_without_a_note(tenant_a, shop, note):
    # given: a failed event and a platform admin
    event, _ = a_session_mismatch(tenant_a, shop)
    client, _ = superuser_client()
    # when: they confirm the resolution without saying what was done
    page = client.post(
        CHANGELIST, {"action": "resolve", "_selected_action": [str(event.pk)], "apply": "1", "note": note}
    )
    # then: asked again, the field in error; nothing resolved, nothing audited
    assert page.status_code == 200 and b"errorlist" in page.content
    assert event_of(event.pk).status == "failed" and resolutions() == []


def test_the_admin_action_resolves_only_failed_events_and_counts_the_others_skipped(tenant_a, shop):
    # given: a failed event and a processed one, both selected
    failed, _ = a_session_mismatch(tenant_a, shop)
    processed = a_processed_payment(tenant_a, shop)
    before = event_of(processed.pk)
    client, _ = superuser_client()
    # when: the admin resolves the selection
    response = client.post(
        CHANGELIST,
        {"action": "resolve", "_selected_action": [str(failed.pk), str(processed.pk)], "apply": "1", "note": NOTE},
        follow=True,
    )
    # then: the message counts what changed; the processed event is untouched
    assert "Resolved 1 failed event(s); 1 skipped (not failed)." in [str(m) for m in response.context["messages"]]
    assert event_of(failed.pk).status == "resolved"
    after = event_of(processed.pk)
    assert (after.status, after.resolved_at, after.resolved_by, after.resolution_note, after.outcome) == (
        "processed",
        None,
        "",
        "",
        before.outcome,
    )
    assert [audit.target_id for audit in resolutions()] == [str(failed.pk)]


def test_staff_who_are_not_superusers_cannot_resolve_events(tenant_a, shop):
    # given: a failed event, and platform staff who may view (and change) everything
    event, _ = a_session_mismatch(tenant_a, shop)
    staff = cast(User, UserFactory(is_staff=True, is_superuser=False))
    staff.user_permissions.set(Permission.objects.filter(codename__regex=r"^(view|change)_"))
    client = Client()
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(CHANGELIST).status_code == 200
    # when: they post the action's confirmation with a note
    client.post(CHANGELIST, {"action": "resolve", "_selected_action": [str(event.pk)], "apply": "1", "note": NOTE})
    # then: nothing resolved, nothing audited
    assert event_of(event.pk).status == "failed" and resolutions() == []


# --- the service: locks, refusals, constraints ----------------------------------------------


def test_two_operators_resolving_one_event_at_once_resolve_it_once(tenant_a, shop):
    # given: a failed event
    event, _ = a_session_mismatch(tenant_a, shop)
    results: dict[str, ResolveResult] = {}
    errors: list[BaseException] = []
    second_done = threading.Event()

    def second_operator() -> None:
        try:
            with system_context("test: bob"):
                results["bob"] = webhook_events_resolve(ids=[event.pk], note="refunded it too", actor_label="ops:bob")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            second_done.set()
            connection.close()

    real_audit_record = payment_services.audit_record  # what webhook_event_audit writes through
    competitor = threading.Thread(target=second_operator)

    def audit_while_bob_resolves(**kwargs: Any) -> AuditLog:
        if threading.current_thread() is not competitor:
            # when: Bob resolves the same event just as Alice's resolution is being written
            competitor.start()
            second_done.wait(timeout=2)  # with the row lock, Bob waits for Alice's commit
        return real_audit_record(**kwargs)

    def alice() -> None:
        try:
            with mock.patch.object(payment_services, "audit_record", side_effect=audit_while_bob_resolves):
                results["alice"] = resolve([event.pk])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=alice)
    first.start()
    first.join(timeout=30)
    competitor.join(timeout=30)
    # then: Alice resolved it; Bob found it resolved and changed nothing; one audit row
    assert errors == []
    assert results["alice"].resolved == [event.pk]
    assert results["bob"] == ResolveResult(resolved=[], skipped={event.pk: "resolved"})
    resolved = event_of(event.pk)
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == ("resolved", "ops:alice", NOTE)
    assert [audit.actor_label for audit in resolutions()] == ["ops:alice"]


def test_a_resolution_naming_an_unknown_event_or_without_a_note_writes_nothing(tenant_a, shop):
    # given: a failed event
    event, _ = a_session_mismatch(tenant_a, shop)
    # when: resolved with a blank note, or together with an id of no event
    with pytest.raises(WebhookResolutionRefused, match="Say what was done"):
        resolve([event.pk], note="  ")
    with pytest.raises(WebhookResolutionRefused, match="No webhook event"):
        resolve([event.pk, uuid.uuid4()])
    # then: still failed, nothing audited
    assert event_of(event.pk).status == "failed" and resolutions() == []


def test_postgres_refuses_a_resolved_event_without_its_time_or_note_and_a_resolution_of_another_status(tenant_a, shop):
    # given: a failed event
    event, _ = a_session_mismatch(tenant_a, shop)
    now = timezone.now()
    with system_context("test"):
        rows = WebhookEvent.objects.filter(pk=event.pk)
        for bad in (
            {"status": "resolved", "resolution_note": NOTE},  # no resolved_at
            {"status": "resolved", "resolved_at": now},  # no note
            {"resolved_at": now, "resolution_note": NOTE},  # still failed
            {"status": "dismissed"},
        ):
            # when: written behind the service's back; then: refused
            with pytest.raises(IntegrityError), transaction.atomic():
                rows.update(**bad)
    assert event_of(event.pk).status == "failed"


# --- a resolved event stays resolved --------------------------------------------------------


def test_a_resolved_event_is_not_replayed_by_the_admin_or_the_command(tenant_a, shop):
    # given: a resolved event
    event, _ = a_session_mismatch(tenant_a, shop)
    resolve([event.pk])
    client, _ = superuser_client()
    # when: an admin replays it
    response = client.post(CHANGELIST, {"action": "replay", "_selected_action": [str(event.pk)]}, follow=True)
    # then: refused: nothing queued, nothing audited, the message says why
    assert "Queued 0 event(s) for processing; 1 skipped (resolved by an operator)." in [
        str(m) for m in response.context["messages"]
    ]
    # when: an operator replays it by id, or every failed event, from the command line
    out = StringIO()
    call_command("webhooks_replay", "--ids", str(event.pk), stdout=out)
    assert out.getvalue() == f"Not replayed, resolved by an operator (final): sandbox {event.event_id}\n"
    out = StringIO()
    call_command("webhooks_replay", "--failed", "--json", stdout=out)
    assert json.loads(out.getvalue())["queued"] == []
    # then: nothing queued, no replay audited; still resolved
    assert pending_topics() == []
    with system_context("test"):
        assert not AuditLog.objects.filter(action="webhook_event.replay").exists()
    assert event_of(event.pk).status == "resolved"


def test_a_message_queued_before_the_resolution_leaves_the_resolved_event_alone(tenant_a, shop):
    # given: a failed event replayed (its message not processed yet), then resolved
    event, checkout_id = a_session_mismatch(tenant_a, shop)
    call_command("webhooks_replay", "--ids", str(event.pk), stdout=StringIO())
    assert pending_topics() == ["webhook.received"]
    resolve([event.pk])
    # when: the worker gets the message
    drain_outbox()
    # then: the event is still resolved, with its first error; the checkout is not paid
    after = event_of(event.pk)
    assert (after.status, after.resolution_note, after.attempts) == ("resolved", NOTE, event.attempts)
    assert after.error == event.error
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"


def test_a_provider_failure_while_confirming_a_resolved_event_does_not_fail_it_again(tenant_a, shop):
    # given: a resolved event whose queued message the worker takes while the provider is down
    event, _ = a_session_mismatch(tenant_a, shop)
    resolve([event.pk])
    outage = ProviderError("sandbox unreachable", provider="sandbox", retryable=True)
    # when: confirming the event with its provider fails (retryable: re-raised for the retry)
    with (
        mock.patch.object(payment_services, "_confirmed_envelope", side_effect=outage),
        pytest.raises(ProviderError),
    ):
        payment_services.webhook_event_process(webhook_event_id=event.pk, message_id=uuid.uuid4())
    # then: the failure is not recorded over the resolution
    after = event_of(event.pk)
    assert (after.status, after.attempts, after.error) == ("resolved", event.attempts, event.error)


# --- manage.py webhooks_resolve -------------------------------------------------------------


def test_the_command_dry_run_writes_nothing_then_the_run_resolves_the_failed_events(tenant_a, shop):
    # given: a failed event and a processed one
    failed, _ = a_session_mismatch(tenant_a, shop)
    processed = a_processed_payment(tenant_a, shop)
    args = ["webhooks_resolve", str(failed.pk), str(processed.pk), "--note", NOTE, "--actor", "ops:carol"]
    # when: an operator runs it with --dry-run
    out = StringIO()
    call_command(*args, "--dry-run", "--json", stdout=out)
    # then: it says what it would do and writes nothing
    assert json.loads(out.getvalue()) == {
        "dry_run": True,
        "resolved": [str(failed.pk)],
        "skipped": {str(processed.pk): "processed"},
    }
    assert event_of(failed.pk).status == "failed" and resolutions() == []
    # when: run for real
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    # then: the failed one is resolved by the actor named, audited; the other untouched
    assert json.loads(out.getvalue())["resolved"] == [str(failed.pk)]
    resolved = event_of(failed.pk)
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == ("resolved", "ops:carol", NOTE)
    assert event_of(processed.pk).status == "processed"
    (audit,) = resolutions()
    assert (audit.actor_label, audit.actor_user_id, audit.target_id) == ("ops:carol", None, str(failed.pk))
    # and: run again, it changes nothing
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    assert json.loads(out.getvalue())["resolved"] == [] and len(resolutions()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--note", "   "], "Say what was done"),
        (["--note", "x" * 1001], "longer than 1000"),
        (["not-a-uuid", "--note", NOTE], "No webhook event not-a-uuid. Nothing was resolved."),
        ([str(uuid.UUID(int=7)), "--note", NOTE], f"No webhook event {uuid.UUID(int=7)}. Nothing was resolved."),
    ],
)
def test_the_command_refuses_clearly_and_writes_nothing(tenant_a, shop, extra, message):
    # given: a failed event
    event, _ = a_session_mismatch(tenant_a, shop)
    # when: the command is given a blank or overlong note, a malformed id or an unknown one
    with pytest.raises(CommandError, match=message):
        call_command("webhooks_resolve", str(event.pk), *extra)
    # then: nothing resolved
    assert event_of(event.pk).status == "failed" and resolutions() == []


def test_the_command_requires_a_note():
    with pytest.raises(CommandError, match="--note"):
        call_command("webhooks_resolve", str(uuid.uuid4()))


# --- migration payments 0004 ----------------------------------------------------------------


def the_migration() -> ModuleType:
    return importlib.import_module("apps.payments.migrations.0004_webhook_event_resolved")


def checks(owner: BaseDatabaseWrapper) -> dict[str, bool]:
    """The status and resolution checks on the webhook events, and whether each is validated."""
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint"
            " WHERE conrelid = 'payments_webhookevent'::regclass AND conname = ANY(%s)",
            [["payments_webhook_status_valid", "payments_webhook_resolved_when"]],
        )
        return {str(name): bool(valid) for name, valid in cursor.fetchall()}


@pytest.fixture
def owner() -> Iterator[BaseDatabaseWrapper]:
    """The owner's connection; the table as 0004 leaves it afterwards, whatever the test did."""
    connection = connections["owner"]
    try:
        yield connection
    finally:
        the_migration().forwards(None, SimpleNamespace(connection=connection))


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_migration_0004_reversed_fails_resolved_events_again_and_run_again_after_a_cut_validates(owner):
    # given: a failed event, resolved
    with system_context("test"):
        event = WebhookEvent.objects.create(
            provider="sandbox",
            event_id="evt_resolved",
            event_type="payment.paid",
            raw_body=b"{}",
            received_at=timezone.now(),
            status="failed",
            error="SessionMismatch: x",
        )
    resolve([event.pk])
    migration = the_migration()
    # when: the migration is reversed (the events under forced RLS, the owner too)
    migration.backwards(None, SimpleNamespace(connection=owner))
    # then: the event is failed again, the columns are gone, the old check holds and is validated
    with transaction.atomic(using="owner"), owner.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute("SELECT status FROM payments_webhookevent WHERE id = %s", [event.pk])
        assert cursor.fetchall() == [("failed",)]
        cursor.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'payments_webhookevent' AND column_name LIKE 'resol%%'"
        )
        assert cursor.fetchone() == (0,)
    assert checks(owner) == {"payments_webhook_status_valid": True}
    # when: applied again, cut short after its first transaction (a lock timeout), then run again
    migration._run(owner, migration.FORWARD_SQL)
    assert checks(owner) == {"payments_webhook_status_valid": False, "payments_webhook_resolved_when": False}
    migration.forwards(None, SimpleNamespace(connection=owner))
    # then: both checks are in place and validated; the event can be resolved again
    assert checks(owner) == {"payments_webhook_status_valid": True, "payments_webhook_resolved_when": True}
    assert resolve([event.pk]).resolved == [event.pk]
