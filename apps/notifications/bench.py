"""Announcement fan-out benchmark: N recipients, from "send" to every e-mail accepted by a mail
server (DESIGN target: 100,000 recipients delivered within 60 s on the 2-core box).

The whole real path runs: `announcement_send` commits the request and its outbox row; a relay
subprocess (`manage.py outbox_relay`) publishes it; a Celery worker subprocess on the
`notifications` queue runs the fenced fan-out (chunks of ANNOUNCEMENT_FANOUT_CHUNK deliveries and
notifications per transaction, one e-mail message per chunk) and the e-mail senders, through
the mailer chosen by `--mailer`: `postmark` (the batch API, 500 messages per request, to a local
stand-in of Postmark's endpoint in this process) or `smtp` (Django's SMTP backend, one message
at a time, to a local aiosmtpd server in this process). "Delivered" = every delivery row says
so and the stand-in counted that many messages. The stand-in shares the two cores with the
rest, so its CPU is reported apart. Nothing else may consume the notifications queue during the
run (stop `make run`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from apps.catalog.models import Event
from apps.core.polling import wait_until
from apps.notifications.mail_sinks import POSTMARK_TEST_TOKEN, SinkState, postmark_sink, smtp_sink
from apps.notifications.models import Announcement, AnnouncementDelivery
from apps.notifications.selectors import announcement_status
from apps.notifications.services import announcement_create, announcement_send
from apps.ops.cpu import CpuWindow, per_unit_ms
from apps.ops.vacuum import vacuum_analyze
from apps.outbox.bench import spawn, stop
from apps.outbox.selectors import outbox_stats
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from apps.tenancy.services import organization_create

TARGET_SECONDS = 60.0
BENCH_TENANT_SLUG = "bench-announcements"
TABLES = [
    "notifications_attendee",
    "notifications_notification",
    "notifications_announcement",
    "notifications_announcementdelivery",
]


def _bench_event(recipients: int, log: Callable[[str], None]) -> tuple[int, int]:
    """The bench studio's event with exactly `recipients` consenting attendees; earlier runs'
    announcements, deliveries and notifications removed (so each run starts alike)."""
    with system_context("announcement bench: set-up"):
        org = Organization.objects.filter(slug=BENCH_TENANT_SLUG).first()
        if org is None:
            org = organization_create(name="Announcement bench", slug=BENCH_TENANT_SLUG)
    with tenant_context(org.pk), transaction.atomic():
        event = Event.objects.filter(slug="bench").first() or Event.objects.create(
            tenant=org, title="Bench marathon", slug="bench", date="2026-05-17"
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM notifications_announcementdelivery WHERE tenant_id = %s", [org.pk])
            cursor.execute("DELETE FROM notifications_notification WHERE tenant_id = %s", [org.pk])
            cursor.execute("DELETE FROM notifications_announcement WHERE tenant_id = %s", [org.pk])
            cursor.execute("SELECT count(*) FROM notifications_attendee WHERE event_id = %s", [event.pk])
            have = int(cursor.fetchone()[0])  # type: ignore[index]
            if have != recipients:
                cursor.execute("DELETE FROM notifications_attendee WHERE event_id = %s", [event.pk])
                cursor.execute(
                    """
                    INSERT INTO notifications_attendee
                           (tenant_id, event_id, email, name, email_consent, consent_recorded_at, created_at)
                    SELECT %s, %s, 'fan' || n || '@bench.example', 'Fan ' || n, true, now(), now()
                      FROM generate_series(1, %s) AS n
                    """,
                    [org.pk, event.pk, recipients],
                )
                log(f"registered {recipients:,} attendees")
    return org.pk, event.pk


@contextmanager
def _mail_service(mailer: str) -> Iterator[tuple[SinkState, dict[str, str]]]:
    """The local stand-in for `mailer`, and the environment that points the worker at it."""
    if mailer == "smtp":
        with smtp_sink(keep_headers=False) as (state, port):
            yield (
                state,
                {
                    "DARKROOM_ANNOUNCEMENT_MAILER": "django",
                    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                    "EMAIL_HOST": "127.0.0.1",
                    "EMAIL_PORT": str(port),
                },
            )
    else:
        with postmark_sink() as (state, url):
            yield (
                state,
                {
                    "DARKROOM_ANNOUNCEMENT_MAILER": "postmark",
                    "POSTMARK_API_URL": url,
                    "POSTMARK_SERVER_TOKEN": POSTMARK_TEST_TOKEN,
                },
            )


def run_bench(
    *, recipients: int, mailer: str, concurrency: int, max_backlog: int, timeout: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Run one benchmark and return its result dict (see the module docstring)."""
    with system_context("announcement bench: backlog"):
        backlog = outbox_stats().pending
    if backlog > max_backlog:
        raise RuntimeError(
            f"{backlog} outbox messages are pending (more than --max-backlog {max_backlog}): the bench's relay would "
            "publish them too. Drain them first (make run), or raise --max-backlog."
        )
    tenant_id, event_id = _bench_event(recipients, log)
    vacuum_analyze(TABLES, log=log)
    logdir = Path(tempfile.mkdtemp(prefix="announcement-bench-"))
    python = sys.executable
    worker = relay = None
    with _mail_service(mailer) as (sink, mail_env):
        try:
            worker = spawn(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config.celery_app",
                    "worker",
                    f"--concurrency={concurrency}",
                    "--queues=notifications",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel=WARNING",
                    f"--hostname=announcement-bench-{os.getpid()}@%h",
                ],
                logdir / "worker.log",
                **mail_env,
            )
            relay = spawn([python, "manage.py", "outbox_relay", "--log-interval=5"], logdir / "relay.log")
            time.sleep(3.0)  # let both connect before the clock starts
            cpu = CpuWindow(roots={os.getpid(): f"bench+{mailer}", worker.pid: "worker", relay.pid: "relay"})
            cpu.start()
            with tenant_context(tenant_id):
                draft = announcement_create(
                    tenant=Organization(pk=tenant_id),
                    event_id=event_id,
                    title="Your photos are online",
                    body="Find yourself in the gallery.",
                    actor=None,
                    actor_label="announcement bench",
                )
                announcement_send(tenant_id=tenant_id, announcement_id=draft.pk, actor_label="announcement bench")
            started = time.monotonic()
            log(f"sent announcement {draft.pk} to {recipients:,} attendees; waiting for delivery")
            last_log = [0.0]

            def delivered() -> bool:
                with tenant_context(tenant_id):
                    announcement = Announcement.objects.get(pk=draft.pk)
                    status = announcement_status(announcement)
                if status.done or time.monotonic() - last_log[0] >= 5.0:
                    last_log[0] = time.monotonic()
                    log(
                        f"  {last_log[0] - started:5.1f} s: {announcement.recipients:,} fanned out, "
                        f"{status.delivered:,} delivered, {status.failed:,} failed, {mailer} accepted {sink.count:,}"
                    )
                return status.done

            finished = wait_until(delivered, timeout=timeout, interval=0.5)
            cpu.stop()
        finally:
            stop(relay)
            stop(worker)
        accepted = sink.count
    with tenant_context(tenant_id):
        announcement = Announcement.objects.get(pk=draft.pk)
        status = announcement_status(announcement)
        rows = AnnouncementDelivery.objects.filter(announcement_id=draft.pk)
        totals = rows.aggregate(attempts=Sum("attempts"), last=Max("delivered_at"))
    # Timed in the database: from the send request's commit to the last delivery recorded.
    assert announcement.send_requested_at is not None
    last = totals["last"] or timezone.now()
    elapsed = (last - announcement.send_requested_at).total_seconds()
    fanout_seconds = (
        (announcement.fanout_completed_at - announcement.send_requested_at).total_seconds()
        if announcement.fanout_completed_at
        else None
    )
    attempts = totals["attempts"] or 0
    ok = finished and status.status == "sent" and status.delivered == recipients == accepted
    passed = ok and elapsed <= TARGET_SECONDS
    summary = (
        f"{recipients:,} recipients: fan-out done in {fanout_seconds or float('nan'):.1f} s, "
        f"all delivered in {elapsed:.1f} s ({recipients / elapsed:,.0f}/s) by {mailer}; accepted {accepted:,}, "
        f"failed {status.failed}, status {status.status} (target ≤ {TARGET_SECONDS:g} s)"
    )
    return {
        "pass": passed,
        "summary": summary,
        "results": {
            "recipients": recipients,
            "fanout_seconds": round(fanout_seconds, 2) if fanout_seconds is not None else None,
            "delivered_seconds": round(elapsed, 2),
            "delivered": status.delivered,
            "failed": status.failed,
            "mailer": mailer,
            "accepted": accepted,
            "send_attempts": attempts,
            "status": status.status,
            "chunk": settings.ANNOUNCEMENT_FANOUT_CHUNK,
            "worker_concurrency": concurrency,
            "cpu": {**cpu.result, "ms_per_recipient": per_unit_ms(cpu.result, recipients)},
            "logs": str(logdir),
        },
    }
