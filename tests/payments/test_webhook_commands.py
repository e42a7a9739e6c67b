"""`manage.py webhooks_replay` and `webhooks_resolve` as an operator runs them from the runbook
"Webhook event failed": events are named as the admin lists them (the provider's event id, with
its provider when two providers share it) or by row id; a name of no event, or of several, refuses
the whole command and writes nothing; the output says what was done in words (a replay is only
queued: where its outcome shows), and `--json` keeps a document for scripts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog

pytestmark = pytest.mark.django_db(transaction=True)

NOTE = "refunded ch_123 in Stripe's dashboard"


def an_event(provider: str, event_id: str, status: str = "failed") -> WebhookEvent:
    with system_context("test: webhook events"):
        return WebhookEvent.objects.create(
            provider=provider,
            event_id=event_id,
            event_type="checkout.session.completed",
            raw_body=b"{}",
            received_at=timezone.now(),
            status=status,
            attempts=1,
            error="SessionMismatch: a payment in another session" if status == "failed" else "",
        )


def state() -> tuple[dict[str, str], int, int]:
    """Each event's status by provider:event id, the replays queued and the audit rows."""
    with system_context("test: read"):
        statuses = {f"{e.provider}:{e.event_id}": e.status for e in WebhookEvent.objects.all()}
        queued = OutboxMessage.objects.filter(topic="webhook.received").count()
        audited = AuditLog.objects.filter(action__in=["webhook_event.replay", "webhook_event.resolve"]).count()
    return statuses, queued, audited


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- naming events as the admin lists them -----------------------------------------------------


@pytest.mark.parametrize("named", ["evt_1Nq", "stripe:evt_1Nq", "Stripe:evt_1Nq", "row id"])
def test_replay_takes_the_event_id_the_admin_shows_with_or_without_its_provider(named: str) -> None:
    # given: a failed Stripe event and another provider's failed event
    event = an_event("stripe", "evt_1Nq")
    an_event("paypal", "WH-77")
    # when: the operator names it by its event id, provider:event id, or row id
    out, _ = run("webhooks_replay", "--ids", str(event.pk) if named == "row id" else named, "--json")
    # then: that event alone is queued again, audited
    assert json.loads(out) == {"queued": [str(event.pk)], "skipped": {}}
    assert state()[1:] == (1, 1)


@pytest.mark.parametrize("named", ["evt_1Nq", "stripe:evt_1Nq", "row id"])
def test_resolve_takes_the_event_id_the_admin_shows_with_or_without_its_provider(named: str) -> None:
    event = an_event("stripe", "evt_1Nq")
    other = an_event("paypal", "WH-77")
    out, _ = run("webhooks_resolve", str(event.pk) if named == "row id" else named, "--note", NOTE, "--json")
    assert json.loads(out) == {"dry_run": False, "resolved": [str(event.pk)], "skipped": {}}
    assert state()[0] == {"stripe:evt_1Nq": "resolved", f"paypal:{other.event_id}": "failed"}


def replay(*names: str) -> tuple[str, str]:
    return run("webhooks_replay", "--ids", *names)


def resolve(*names: str) -> tuple[str, str]:
    return run("webhooks_resolve", *names, "--note", NOTE)


COMMANDS = [(replay, "Nothing was replayed."), (resolve, "Nothing was resolved.")]


@pytest.mark.parametrize(("command", "refused"), COMMANDS)
def test_an_event_id_two_providers_share_is_refused_naming_both_and_writes_nothing(
    command: Callable[..., tuple[str, str]], refused: str
) -> None:
    # given: two providers' events with one event id, and a failed event named clearly
    an_event("stripe", "evt_same")
    an_event("paypal", "evt_same")
    clear = an_event("stripe", "evt_clear")
    before = state()
    # when: the shared id is named without its provider
    with pytest.raises(CommandError) as refusal:
        command("evt_clear", "evt_same")
    # then: the command names the events it could mean and how to pick one; nothing is written
    message = str(refusal.value)
    assert message == (
        f"evt_same names 2 webhook events: paypal:evt_same, stripe:evt_same; name one as provider:event id. {refused}"
    )
    assert state() == before
    # and: named with its provider, it is taken (queued again and audited, or resolved)
    command("paypal:evt_same", str(clear.pk))
    statuses, queued, audited = state()
    assert audited == 2 and statuses["stripe:evt_same"] == "failed"
    if command is replay:
        assert queued == 2
    else:
        assert (statuses["paypal:evt_same"], statuses["stripe:evt_clear"]) == ("resolved", "resolved")


@pytest.mark.parametrize(("command", "refused"), COMMANDS)
def test_names_of_no_event_are_refused_each_named_and_nothing_is_written(
    command: Callable[..., tuple[str, str]], refused: str
) -> None:
    # given: a failed event
    event = an_event("stripe", "evt_known")
    before = state()
    unknown_row = str(uuid.UUID(int=7))
    # when: it is named with an unknown event id, another provider's id and an unknown row id
    with pytest.raises(CommandError) as refusal:
        command(str(event.pk), "evt_typo", "paypal:evt_known", unknown_row)
    # then: every name that found nothing is listed; nothing is written, the known event included
    message = str(refusal.value)
    assert message.startswith(f"No webhook event evt_typo, paypal:evt_known, {unknown_row}. {refused} ")
    assert message.endswith(
        "Name an event by the event id the admin lists (evt_1Nq...), as provider:event id "
        "(stripe:evt_1Nq...), or by its row id."
    )
    assert state() == before


# --- what the commands say ---------------------------------------------------------------------


def test_replay_says_the_events_are_only_queued_and_where_to_see_the_outcome() -> None:
    # given: a failed event and one an operator resolved
    failed = an_event("stripe", "evt_failed")
    resolved = an_event("stripe", "evt_resolved")
    run("webhooks_resolve", "evt_resolved", "--note", NOTE)
    # when: both are replayed by id
    out, _ = run("webhooks_replay", "--ids", "evt_failed", "stripe:evt_resolved")
    # then: it says which was queued (not processed yet), where its outcome shows, and which was
    # not replayed and why
    assert "Queued 1 webhook event to be processed again; it is not processed yet:" in out
    assert f"stripe evt_failed (was failed): /admin/payments/webhookevent/{failed.pk}/change/" in out
    assert "The worker takes each within seconds. Its outcome shows on its admin page" in out
    assert "Not replayed, resolved by an operator (final): stripe evt_resolved" in out
    assert str(resolved.pk) not in out.split("Not replayed")[0]
    # and: --failed with nothing failed says so
    run("webhooks_resolve", "evt_failed", "--note", NOTE)
    out, _ = run("webhooks_replay", "--failed")
    assert out.strip() == "No failed webhook events: nothing queued."


def test_replay_json_lists_what_was_queued_and_what_was_not() -> None:
    failed = an_event("stripe", "evt_failed")
    resolved = an_event("stripe", "evt_resolved")
    run("webhooks_resolve", str(resolved.pk), "--note", NOTE)
    out, _ = run("webhooks_replay", "--ids", str(failed.pk), str(resolved.pk), "--json")
    assert json.loads(out) == {"queued": [str(failed.pk)], "skipped": {str(resolved.pk): "resolved"}}
    out, _ = run("webhooks_replay", "--failed", "--json")
    assert json.loads(out) == {"queued": [str(failed.pk)], "skipped": {}}


def test_resolve_says_what_it_resolved_and_what_it_left_in_words() -> None:
    # given: a failed event and a processed one
    an_event("stripe", "evt_failed")
    an_event("stripe", "evt_done", status="processed")
    # when: a dry run, then the run
    out, _ = run("webhooks_resolve", "evt_failed", "evt_done", "--note", NOTE, "--dry-run")
    # then: each says what it did (or would do), event by event, in the admin's terms
    assert out.splitlines() == [
        "Dry run: nothing was written.",
        "Would resolve 1 failed webhook event:",
        "  stripe evt_failed",
        "Would leave 1 event that is not failed:",
        "  stripe evt_done (processed)",
    ]
    assert state()[0]["stripe:evt_failed"] == "failed"
    out, _ = run("webhooks_resolve", "evt_failed", "evt_done", "--note", NOTE)
    assert out.splitlines() == [
        "Resolved 1 failed webhook event, with the note: refunded ch_123 in Stripe's dashboard",
        "  stripe evt_failed",
        "Left 1 event that is not failed:",
        "  stripe evt_done (processed)",
    ]
    assert state()[0]["stripe:evt_failed"] == "resolved"
