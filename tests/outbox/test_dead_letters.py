"""Backoff with jitter, dead-lettering after OUTBOX_MAX_ATTEMPTS, audited replay (admin and CLI)."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.outbox.models import OutboxMessage
from apps.outbox.relay import relay_batch
from apps.outbox.services import retry_delay_seconds
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog, User
from tests.fixtures import purge_queues

pytestmark = pytest.mark.django_db(transaction=True)

UNROUTED = "outboxtest.nobody-listens"


def _relay_due_now() -> None:
    """One relay pass as if the backoff had elapsed (moves next_attempt_at, not the clock)."""
    with system_context("outbox relay"):
        OutboxMessage.objects.filter(status="pending").update(next_attempt_at=timezone.now())
        relay_batch(batch_size=50)


def _rows() -> list[OutboxMessage]:
    with system_context("test"):
        return list(OutboxMessage.objects.order_by("created_at"))


def test_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 2
    settings.OUTBOX_RETRY_MAX_SECONDS = 60
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (20, 60)]:
        delays = [retry_delay_seconds(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, not one fixed delay


def test_failed_publish_is_retried_later_then_dead_lettered(settings, tenant_a, publish):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_RETRY_BASE_SECONDS = 30
    # given: a message whose topic no consumer handles
    [message] = publish(tenant_id=tenant_a.org.pk, topic=UNROUTED)
    # when: the relay tries once
    before = timezone.now()
    with system_context("outbox relay"):
        result = relay_batch(batch_size=50)
    # then: one attempt is counted and the next one waits for the backoff (15..30 s)
    assert (result.claimed, result.failed, result.dead) == (1, 1, 0)
    [row] = _rows()
    assert (row.status, row.attempts) == ("pending", 1)
    assert before + dt.timedelta(seconds=15) <= row.next_attempt_at <= timezone.now() + dt.timedelta(seconds=30)
    assert "no outbox consumer" in row.last_error
    # ... and a relay pass before then does not touch it
    with system_context("outbox relay"):
        assert relay_batch(batch_size=50).claimed == 0
    # when: the attempts run out
    _relay_due_now()
    _relay_due_now()
    # then: the message is a dead letter, and relays leave it alone
    [row] = _rows()
    assert (row.id, row.status, row.attempts) == (message.id, "dead", 3)
    _relay_due_now()
    assert _rows()[0].attempts == 3


@pytest.fixture
def dead_letters(settings, tenant_a, publish) -> list[OutboxMessage]:
    settings.OUTBOX_MAX_ATTEMPTS = 1
    messages = publish(tenant_id=tenant_a.org.pk, topic=UNROUTED, count=2)
    publish(tenant_id=None, topic=UNROUTED)  # a platform dead letter too
    _relay_due_now()
    assert {m.status for m in _rows()} == {"dead"}
    return messages


def test_admin_lists_dead_letters_and_replays_them_with_an_audit_row(client, dead_letters, tenant_a):
    # given: a platform superuser in the admin
    admin = User.objects.create_superuser(username="root", email="root@example.test", password="pw")
    client.force_login(admin)
    listing = client.get("/admin/outbox/outboxmessage/?dead=yes")
    assert listing.status_code == 200
    for message in dead_letters:
        assert str(message.id) in listing.content.decode()
    # (search by id, and a search term that is not an id, both render)
    assert (
        str(dead_letters[1].id) in client.get(f"/admin/outbox/outboxmessage/?q={dead_letters[1].id}").content.decode()
    )
    assert client.get("/admin/outbox/outboxmessage/?q=outboxtest").status_code == 200
    assert client.get(f"/admin/outbox/outboxmessage/{dead_letters[0].id}/change/").status_code == 200
    # when: they replay one dead letter
    chosen = dead_letters[0]
    response = client.post(
        "/admin/outbox/outboxmessage/",
        {"action": "replay_dead_letters", "_selected_action": [str(chosen.id)]},
    )
    assert response.status_code == 302
    # then: it is pending again with a fresh attempt budget, the others stay dead ...
    rows = {m.id: m for m in _rows()}
    assert (rows[chosen.id].status, rows[chosen.id].attempts) == ("pending", 0)
    assert rows[chosen.id].next_attempt_at <= timezone.now()
    assert [m.status for m in rows.values() if m.id != chosen.id] == ["dead", "dead"]
    # ... and the audit log says who replayed what, in the message's tenant
    with system_context("test"):
        audit = AuditLog.objects.get(action="outbox.replay")
    assert (audit.target_id, audit.actor_user_id, audit.tenant_id) == (str(chosen.id), admin.pk, tenant_a.org.pk)
    assert audit.data["attempts"] == 1 and "no outbox consumer" in audit.data["last_error"]


def test_admin_refuses_non_superusers(client, dead_letters, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post(
        "/admin/outbox/outboxmessage/",
        {"action": "replay_dead_letters", "_selected_action": [str(dead_letters[0].id)]},
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert {m.status for m in _rows()} == {"dead"}


def test_cli_replays_all_dead_letters_or_named_ones_and_audits_each(dead_letters, publish, settings):
    # given: a pending message that is not a dead letter
    settings.OUTBOX_MAX_ATTEMPTS = 10
    [pending] = publish(tenant_id=None, topic=UNROUTED)
    # when: one dead letter and the pending message are named
    out = StringIO()
    call_command("outbox_replay", "--ids", str(dead_letters[0].id), str(pending.id), "--json", stdout=out)
    # then: only the dead letter is replayed; the other is reported as skipped, with its status
    assert json.loads(out.getvalue()) == {
        "replayed": [str(dead_letters[0].id)],
        "skipped": {str(pending.id): "pending"},
    }
    # when: --dead replays the rest
    out = StringIO()
    call_command("outbox_replay", "--dead", "--json", stdout=out)
    assert len(json.loads(out.getvalue())["replayed"]) == 2
    # then: nothing is dead any more, and there is one audit row per replayed message
    assert {m.status for m in _rows()} == {"pending"}
    with system_context("test"):
        audits = list(AuditLog.objects.filter(action="outbox.replay").values_list("actor_label", flat=True))
    assert audits == ["cli"] * 3


def test_replayed_message_is_published_once_a_consumer_exists(dead_letters, settings):
    # given: a dead letter of a topic that now has a consumer
    settings.OUTBOX_ROUTES = {UNROUTED: "outboxtest.apply_effect"}
    with system_context("outbox replay"):
        from apps.outbox.services import outbox_replay

        outbox_replay(message_ids=[dead_letters[0].id])
    # when: the relay runs
    with system_context("outbox relay"):
        result = relay_batch(batch_size=50)
    # then: it is published
    assert (result.claimed, result.published) == (1, 1)
    assert {m.id: m.status for m in _rows()}[dead_letters[0].id] == "published"


def test_a_published_message_the_broker_lost_is_sent_again_only_when_named_with_the_flag(
    effect_table, tenant_a, publish
):
    # given: a message the relay published, whose broker message was then lost (never consumed)
    [message] = publish(tenant_id=tenant_a.org.pk)
    with system_context("outbox relay"):
        assert relay_batch(batch_size=50).published == 1
    purge_queues()
    # when: it is named without the flag, then the flag without naming it
    out = StringIO()
    call_command("outbox_replay", "--ids", str(message.id), "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"replayed": [], "skipped": {str(message.id): "published"}}
    with pytest.raises(CommandError, match="needs --ids"):
        call_command("outbox_replay", "--dead", "--include-published")
    # when: it is named with the flag
    out = StringIO()
    call_command("outbox_replay", "--ids", str(message.id), "--include-published", "--json", stdout=out)
    # then: pending again under the same id, audited with its previous status
    assert json.loads(out.getvalue()) == {"replayed": [str(message.id)], "skipped": {}}
    assert {m.id: m.status for m in _rows()}[message.id] == "pending"
    with system_context("test"):
        audit = AuditLog.objects.get(action="outbox.replay", target_id=str(message.id))
    assert audit.data["status"] == "published"


def test_cli_says_not_found_for_an_unknown_id_and_replays_nothing(dead_letters):
    # given: a dead letter, and an id of no message (a typo, or a row long deleted)
    unknown = "01900000-0000-7000-8000-000000000000"
    # when: both are named
    with pytest.raises(CommandError) as refusal:
        call_command("outbox_replay", "--ids", str(dead_letters[0].id), unknown)
    # then: the command fails (exit status 1 from manage.py) naming the id not found, and replays
    # nothing, the dead letter named with it included
    assert str(refusal.value) == (
        f"Not found: outbox message {unknown}. Nothing was replayed; check the ids in the admin's outbox messages."
    )
    assert {m.status for m in _rows()} == {"dead"}
    with system_context("test"):
        assert not AuditLog.objects.filter(action="outbox.replay").exists()
    # and: a value that is no message id at all is refused the same way
    with pytest.raises(CommandError, match="Not found: outbox message 12345"):
        call_command("outbox_replay", "--ids", "12345")


def test_cli_says_in_words_what_it_replayed_and_why_it_left_the_others(dead_letters, publish, settings, tenant_a):
    # given: a dead letter, a pending message and a published one
    settings.OUTBOX_MAX_ATTEMPTS = 10
    [pending] = publish(tenant_id=None, topic=UNROUTED)
    [published] = publish(tenant_id=tenant_a.org.pk)
    with system_context("test"):
        OutboxMessage.objects.filter(pk=published.pk).update(status="published", published_at=timezone.now())
    dead = dead_letters[0]
    # when: all three are named
    out = StringIO()
    call_command("outbox_replay", "--ids", str(dead.id), str(pending.id), str(published.id), stdout=out)
    # then: the dead letter is replayed (back to pending, for the relay), the others are left, each
    # with its status; a published one with the flag that would send it again
    assert out.getvalue().splitlines() == [
        "Replayed 1 outbox message: pending again, the relay sends it within seconds "
        "(see its status in the admin's outbox messages).",
        f"  {dead.id} {UNROUTED}",
        "Not replayed:",
        f"  {pending.id} not dead-lettered (status pending)",
        f"  {published.id} not dead-lettered (status published; --include-published sends it again)",
    ]
    # and: --dead with no dead letter left says so
    call_command("outbox_replay", "--dead", stdout=StringIO())
    out = StringIO()
    call_command("outbox_replay", "--dead", stdout=out)
    assert out.getvalue().strip() == "No dead letters: nothing replayed."
