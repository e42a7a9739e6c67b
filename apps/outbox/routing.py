"""Topic → Celery task routing for outbox messages, and the consumer decorator.

Declare a consumer next to the domain's tasks (tasks/<domain>.py)::

    @outbox_consumer("checkout.created", name="commerce.on_checkout_created")
    def on_checkout_created(*, message_id: str, payload: dict[str, Any]) -> None:
        checkout_confirm(checkout_id=payload["checkout_id"])  # runs once per message

* One topic has one consumer task (`OutboxRouteConflict` otherwise); to fan out, the consumer
  publishes further outbox messages in its own transaction.
* The relay sends `send_task(name, kwargs={"message_id", "payload"}, task_id=<message id>)` with
  headers `tenant_id` and `request_id` (the producer's), so the task runs in the message's tenant
  context (apps/core/signals.py), plus `outbox_topic` and `outbox_message_id`.
* With `once=True` (default) the function body runs inside `consume_once`: one transaction that
  holds the inbox row and the consumer's effect. A redelivery (relay re-publish, worker lost,
  visibility timeout) then finds the inbox row and is skipped. A consumer that must do work
  outside a transaction (a provider call) passes `once=False` and uses `consume_once` itself
  around its database effect.
* Tasks are `acks_late` with `reject_on_worker_lost` (also the project default): a worker that
  dies mid-task gets the message redelivered, and the inbox makes that harmless.
* Tasks retry transient database errors (`TRANSIENT_DATABASE_ERRORS`: a restart, a failover, a
  dropped connection) with backoff, besides the `autoretry_for` a consumer declares: the
  message is already marked published, so a task that gave up would lose its effect.
* The queue comes from CELERY_TASK_ROUTES (task-name prefix) unless `queue=` is given.
* `lost_message_flow="<flow>"` declares that the broker may lose this topic's messages without
  a business row noticing, and that the consumer records its inbox row `name` on every final
  outcome (`once=True` does; so does `send_once`): the sweep of apps/outbox/unconsumed.py then
  sends a published message without that row again.
* `settings.OUTBOX_ROUTES` (`{"topic": "task.name"}` or `{"topic": {"task": ..., "queue": ...}}`)
  overrides or adds routes without code, e.g. to point a topic at another task during a migration.

The relay imports the modules in CELERY_IMPORTS at start, so decorated consumers in tasks/*.py
are registered there. A message whose topic has no route fails its publish attempt (retried,
then dead-lettered), so nothing is silently dropped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger("darkroom.outbox")

# A consumer's message is already marked published when the task runs: a task that fails for
# good loses its effect. So a consumer retries what a database restart, failover or dropped
# connection raises, with backoff (up to 1, 2, 4 ... 60 s, jittered; five minutes at most), on
# top of whatever `autoretry_for` it declares. The inbox makes every retry harmless.
TRANSIENT_DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
CONSUMER_RETRY_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


@dataclass(frozen=True)
class Route:
    topic: str
    task_name: str
    queue: str | None = None


@dataclass(frozen=True)
class LostMessageFlow:
    """A topic whose lost messages are found by the missing inbox row of `consumer`."""

    flow: str
    topic: str
    consumer: str


class OutboxRouteConflict(ValueError):
    """A topic was registered twice for different tasks."""


class NoRouteForTopic(LookupError):
    """No consumer is registered (or configured) for a message's topic."""


_registry: dict[str, Route] = {}
_lost_message_flows: dict[str, LostMessageFlow] = {}


def register_route(topic: str, task_name: str, *, queue: str | None = None) -> Route:
    """Register `topic` → `task_name`. Re-registering the same route is a no-op (module reloads)."""
    route = Route(topic=topic, task_name=task_name, queue=queue)
    existing = _registry.get(topic)
    if existing is not None and existing != route:
        raise OutboxRouteConflict(f"topic {topic!r} already routes to {existing.task_name!r}")
    _registry[topic] = route
    return route


def unregister_route(topic: str) -> None:
    _registry.pop(topic, None)


def lost_message_flows() -> list[LostMessageFlow]:
    """The flows declared with `lost_message_flow=`, by flow name."""
    return sorted(_lost_message_flows.values(), key=lambda flow: flow.flow)


def resolve_route(topic: str) -> Route:
    """The route for `topic`: settings.OUTBOX_ROUTES first, then the decorator registry.

    Raises NoRouteForTopic.
    """
    configured = getattr(settings, "OUTBOX_ROUTES", {}).get(topic)
    if isinstance(configured, str):
        return Route(topic=topic, task_name=configured)
    if isinstance(configured, dict):
        return Route(topic=topic, task_name=configured["task"], queue=configured.get("queue"))
    route = _registry.get(topic)
    if route is None:
        raise NoRouteForTopic(f"no outbox consumer for topic {topic!r}")
    return route


def outbox_consumer(
    topic: str,
    *,
    name: str,
    queue: str | None = None,
    once: bool = True,
    lost_message_flow: str | None = None,
    **task_options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Make `fn(*, message_id, payload)` the Celery task `name` that consumes `topic`.

    `once=True`: the body runs in `consume_once(consumer=name, message_id=...)` and is skipped
    (returns None) for a message this consumer already applied. Extra keyword arguments go
    to `shared_task` (e.g. `autoretry_for`, `retry_backoff`, `max_retries`).
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def run(*, message_id: str, payload: dict[str, Any]) -> Any:
            if not once:
                return fn(message_id=message_id, payload=payload)
            from apps.outbox.services import consume_once

            with consume_once(consumer=name, message_id=message_id) as first:
                if not first:
                    logger.info("outbox duplicate skipped", extra={"consumer": name, "message_id": message_id})
                    return None
                return fn(message_id=message_id, payload=payload)

        options: dict[str, Any] = {**CONSUMER_RETRY_OPTIONS, **task_options}
        options["autoretry_for"] = (*TRANSIENT_DATABASE_ERRORS, *task_options.get("autoretry_for", ()))
        task = shared_task(name=name, **options)(run)
        register_route(topic, name, queue=queue)
        if lost_message_flow is not None:
            _lost_message_flows[lost_message_flow] = LostMessageFlow(flow=lost_message_flow, topic=topic, consumer=name)
        return task

    return decorate
