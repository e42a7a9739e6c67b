"""Webhook events as operators name them on the command line (`webhooks_replay --ids`,
`webhooks_resolve`): the provider's event id the admin lists (`evt_1Nq…`), the same with its
provider (`stripe:evt_1Nq…`, needed only when two providers sent one event id), or the event's
row id (the UUID in its admin page's address)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.core.management.base import CommandError
from django.db.models import Q

from apps.payments.models import WebhookEvent
from apps.payments.providers.registry import PROVIDER_NAMES

NAMES_HELP = (
    "webhook events: each the provider's event id the admin lists (evt_1Nq...), as provider:event id "
    "(stripe:evt_1Nq...) when two providers share it, or the event's row id"
)


def event_name(event: WebhookEvent) -> str:
    """How the output names an event: its provider and event id, as the admin lists them."""
    return f"{event.provider} {event.event_id}"


def _matches(value: str) -> list[WebhookEvent]:
    provider, colon, event_id = value.partition(":")
    if colon and provider.lower() in PROVIDER_NAMES:
        return list(WebhookEvent.objects.filter(provider=provider.lower(), event_id=event_id))
    named = Q(event_id=value)
    try:
        named |= Q(pk=uuid.UUID(value))
    except ValueError:
        pass
    return list(WebhookEvent.objects.filter(named).order_by("provider", "event_id")[:10])


def webhook_events_named(values: Sequence[str], *, refused: str) -> list[WebhookEvent]:
    """The events `values` name, each once, in the order first named. The caller acts in the
    system context. Raises CommandError, before anything is written, naming every value that
    names no event and every one that names several (an event id two providers sent; the error
    lists them as provider:event id); `refused` says what was not done ("Nothing was replayed.")."""
    found: dict[uuid.UUID, WebhookEvent] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    for value in values:
        value = value.strip()
        matches = _matches(value)
        if not matches:
            unknown.append(value)
        elif len(matches) > 1:
            candidates = ", ".join(f"{e.provider}:{e.event_id}" for e in matches)
            ambiguous.append(f"{value} names {len(matches)} webhook events: {candidates}")
        else:
            found.setdefault(matches[0].pk, matches[0])
    if unknown or ambiguous:
        problems = [f"No webhook event {', '.join(unknown)}."] if unknown else []
        problems += [f"{name}; name one as provider:event id." for name in ambiguous]
        problems.append(refused)
        if unknown:
            problems.append(
                "Name an event by the event id the admin lists (evt_1Nq...), as provider:event id "
                "(stripe:evt_1Nq...), or by its row id."
            )
        raise CommandError(" ".join(problems))
    return list(found.values())
