"""Commerce test plumbing: an in-process HTTP transport into the Django app, an outbox driver
that runs each pending message through its consumer task's code, and small readers."""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.utils import timezone

from apps.outbox.models import OutboxMessage
from apps.outbox.routing import resolve_route
from apps.payments.providers.http import HttpRequest, HttpResponse
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app

_handler: WSGIHandler | None = None


class WsgiTransport:
    """An `HttpTransport` that hands the request to Django's real WSGI handler in-process (the
    whole middleware stack, as gunicorn would), so the sandbox sender needs no server."""

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        global _handler
        if _handler is None:
            _handler = WSGIHandler()
        parts = urlsplit(request.url)
        body = request.body or b""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.upper(),
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            else:
                environ[f"HTTP_{key}"] = value
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = int(status.split()[0])
            captured["headers"] = dict(headers)

        chunks = _handler(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return HttpResponse(captured["status"], captured["headers"], content)


def drain_outbox(*, rounds: int = 30, topics: set[str] | None = None) -> list[str]:
    """Run every pending outbox message (and those its consumers publish) through the consumer
    task's own code, in the message's tenant context, as the relay + a worker would. Returns
    the topics handled, in order. Messages of other topics are left pending."""
    celery_app.loader.import_default_modules()  # the consumers register their topics on import
    handled: list[str] = []
    for _ in range(rounds):
        with system_context("test outbox drain"):
            pending = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).order_by("created_at", "id")
            if topics is not None:
                pending = pending.filter(topic__in=topics)
            messages = list(pending)
        if not messages:
            return handled
        for message in messages:
            with system_context("test outbox drain"):
                OutboxMessage.objects.filter(pk=message.pk).update(
                    status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
                )
            task = celery_app.tasks[resolve_route(message.topic).task_name]
            with tenant_context(message.tenant_id):
                task(message_id=str(message.pk), payload=message.payload)
            handled.append(message.topic)
    raise AssertionError(f"outbox did not drain after {rounds} rounds: {handled}")


def pending_topics() -> list[str]:
    with system_context("test outbox read"):
        return list(
            OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING)
            .order_by("created_at", "id")
            .values_list("topic", flat=True)
        )


def system_count(queryset_factory: Callable[[], Any]) -> int:
    with system_context("test count"):
        return int(queryset_factory().count())


def in_tenant(tenant_id: int, fn: Callable[[], Any]) -> Any:
    with tenant_context(tenant_id):
        return fn()


def new_key() -> str:
    return str(uuid.uuid4())


def close_connection() -> None:
    connection.close()


# --- sandbox payments ---------------------------------------------------------------------


def sandbox_provider() -> Any:
    from apps.payments.providers.registry import get_provider

    return get_provider("sandbox")


def sandbox_paid(checkout_id: str) -> Any:
    """The shopper pays at the sandbox (its session must exist): the `payment.paid` event."""
    from apps.payments.providers.base import PaymentStatus

    return sandbox_provider().settle(reference=f"sbx_{checkout_id}", outcome=PaymentStatus.PAID)


def sandbox_failed(checkout_id: str) -> Any:
    from apps.payments.providers.base import PaymentStatus

    return sandbox_provider().settle(reference=f"sbx_{checkout_id}", outcome=PaymentStatus.FAILED)


def sandbox_refunded(checkout_id: str, amount_minor: int) -> Any:
    """The studio refunds at the sandbox (after paying): the `payment.refunded` event."""
    provider = sandbox_provider()
    provider.refund(reference=f"sbx_{checkout_id}", amount_minor=amount_minor, idempotency_key=f"test:{checkout_id}")
    return provider.refunded_event(reference=f"sbx_{checkout_id}")


def deliver(events: list[Any], *, duplicates: int = 1, shuffle: bool = False, seed: int | None = None) -> list[int]:
    """Sign and POST events to /webhooks/sandbox through the real WSGI handler (sandbox sender)."""
    import random

    from django.conf import settings

    from apps.payments.providers.sandbox import SandboxWebhookSender

    sender = SandboxWebhookSender(
        secret=settings.SANDBOX_WEBHOOK_SECRET,
        url=settings.SANDBOX_WEBHOOK_URL,
        transport=WsgiTransport(),
        duplicates=duplicates,
        shuffle=shuffle,
        rng=random.Random(seed),
    )
    return sender.send(sender.plan(events))


def buy_print(shop: Any, n: int, quantity: int = 1) -> Any:
    """Shopper n checks out `quantity` of the shop's print through the service (its tenant context)."""
    from apps.commerce.services import LineIn, checkout_create
    from tests.factories.commerce import shipping_in

    with tenant_context(shop.org.pk):
        return checkout_create(
            tenant_id=shop.org.pk,
            email=f"buyer{n}@example.test",
            provider="sandbox",
            lines=[LineIn(product_id=shop.print.pk, quantity=quantity)],
            shipping=shipping_in(),
        )


# What a checkout writes, per table; a refused one writes none of it.
NOTHING_WRITTEN = {"checkouts": 0, "lines": 0, "reservations": 0, "transactions": 0, "outbox": 0}


def checkout_write_counts() -> dict[str, int]:
    """Rows of every studio a checkout writes: checkouts, lines, reservations, transactions and
    `checkout.*` outbox messages."""
    from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation, Transaction

    return {
        "checkouts": system_count(lambda: Checkout.objects.all()),
        "lines": system_count(lambda: CheckoutLine.objects.all()),
        "reservations": system_count(lambda: InventoryReservation.objects.all()),
        "transactions": system_count(lambda: Transaction.objects.all()),
        "outbox": system_count(lambda: OutboxMessage.objects.filter(topic__startswith="checkout.")),
    }
