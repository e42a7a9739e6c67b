"""Shared set-up of the announcement tests: an event with attendees, and the outbox steps run
by hand (the consumers' services, in the message's tenant context)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from django.test import override_settings

from apps.catalog.models import Event
from apps.notifications.mail_sinks import SinkState, smtp_sink
from apps.notifications.models import Announcement, AnnouncementDelivery, Attendee, Notification
from apps.notifications.services import (
    TOPIC_EMAILS,
    AttendeeIn,
    SendResult,
    announcement_create,
    announcement_emails_send,
    announcement_send,
    attendees_register,
)
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.factories.catalog import EventFactory


def event_with_attendees(org: Organization, *, consenting: int, silent: int = 0) -> tuple[Event, list[Attendee]]:
    """An event of `org` with `consenting` attendees who agreed to e-mail and `silent` who did not."""
    with tenant_context(org.pk):
        event = EventFactory(tenant=org)
        rows = [AttendeeIn(email=f"fan{i}@example.com", name=f"Fan {i}", email_consent=True) for i in range(consenting)]
        rows += [AttendeeIn(email=f"quiet{i}@example.com") for i in range(silent)]
        if rows:
            attendees_register(tenant=org, event_id=event.pk, attendees=rows, actor_label="test")
        return event, list(Attendee.objects.filter(event=event).order_by("id"))


def sent_announcement(org: Organization, event: Event, *, title: str = "Photos are online") -> Announcement:
    with tenant_context(org.pk):
        announcement = announcement_create(
            tenant=org, event_id=event.pk, title=title, body="Find yourself here.", actor=None, actor_label="t"
        )
        return announcement_send(tenant_id=org.pk, announcement_id=announcement.pk, actor_label="test")


def email_messages(announcement: Announcement) -> list[dict[str, Any]]:
    with system_context("test: outbox"):
        return list(
            OutboxMessage.objects.filter(topic=TOPIC_EMAILS, aggregate_id=str(announcement.pk))
            .order_by("created_at", "id")
            .values_list("payload", flat=True)
        )


def send_all_emails(announcement: Announcement) -> list[SendResult]:
    """Run the e-mail consumer on every `announcement.emails` message, as the worker would."""
    with tenant_context(announcement.tenant_id):
        return [
            announcement_emails_send(announcement_id=p["announcement_id"], after=p["after"], upto=p["upto"])
            for p in email_messages(announcement)
        ]


def deliveries(announcement: Announcement) -> list[AnnouncementDelivery]:
    with system_context("test: deliveries"):
        return list(AnnouncementDelivery.objects.filter(announcement=announcement).order_by("attendee_id"))


def notifications_of(org: Organization) -> list[Notification]:
    with system_context("test: notifications"):
        return list(Notification.objects.filter(tenant=org).order_by("attendee_id", "id"))


@contextmanager
def smtp_server(settings: Any = None) -> Iterator[SinkState]:
    """A real local SMTP server, with Django's SMTP backend pointed at it.

    The sink never stalls on purpose, so its timeouts only bound a loaded machine: aiosmtpd's
    start-up wait (5 s by default, read from AIOSMTPD_CONTROLLER_TIMEOUT when the controller is
    made) and the client's socket timeout are generous; both end as soon as the server answers.
    """
    with (
        mock.patch.dict(os.environ, {"AIOSMTPD_CONTROLLER_TIMEOUT": "60"}),
        smtp_sink() as (state, port),
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_USE_TLS=False,
            EMAIL_TIMEOUT=30,
        ),
    ):
        yield state
