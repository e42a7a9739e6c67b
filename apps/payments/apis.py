"""`POST /webhooks/<provider>`: the provider-facing endpoint of the webhook event ledger.

A plain Django view, on purpose: no tenant API, no Idempotency-Key (the provider's event id is
the dedupe key), no session or CSRF (providers authenticate by signature), and no
ATOMIC_REQUESTS-style transaction around the handler (record first, process after). It:

1. reads the raw body (oversize: 413; `BodySizeLimitMiddleware` refuses a declared oversize
   body before it is read, and the read itself is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE);
2. verifies the signature on those exact bytes and parses the event (invalid or missing
   signature, malformed body, identifiers PostgreSQL text cannot hold, an event id longer than
   the ledger keeps: 400 problem, and nothing is recorded);
3. records the event and its outbox message in one short transaction and answers 200 at once,
   for duplicates too (`"duplicate": true`), so the provider stops retrying.
Processing happens later, in the `webhook.received` consumer.

Refusals are budgeted per provider and client address (`WEBHOOK_REFUSAL_RATE`, 60 a minute),
and a delivery that verifies is never refused by that budget, nor counted against it: behind a
proxy many senders may share one address, so a forger's refusals must not lock out the provider.
Verification is always done when it is local (an HMAC, or PayPal's RSA check with a cached
certificate); over the budget, a failed one answers 429 with `Retry-After` instead of 400. Only
verification that would fetch PayPal's certificate (an allow-listed, uncached URL) waits for the
budget, checked before the fetch, so forged deliveries cannot make us fetch without bound.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.client_address import rate_limit_address
from apps.core.problems import problem_response
from apps.ops.ratelimit import Rate, page_limit_name, rate_limit_wait
from apps.payments.providers.base import (
    PaymentProvider,
    UnknownProviderError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.registry import get_provider
from apps.payments.services import event_id_problem, webhook_event_record

logger = logging.getLogger("darkroom.payments.webhooks")


def _refusals(request: HttpRequest, provider: str, *, count: bool) -> int:
    """Look at (count=False) or count one refusal in the address's budget for this provider:
    0 while within it, else the seconds to wait."""
    if not settings.RATE_LIMIT_ENABLED:
        return 0
    key = f"webhook-refusals:{provider}:{rate_limit_address(request)}"
    return rate_limit_wait(
        key=key,
        rate=Rate.parse(settings.WEBHOOK_REFUSAL_RATE),
        limit=page_limit_name("WEBHOOK_REFUSAL_RATE"),
        count=count,
    )


def _verification_fetches(adapter: PaymentProvider, headers: dict[str, str]) -> bool:
    """True if verifying this delivery would call out over the network (PayPal's certificate
    fetch); every other verification is local and cheaper than refusing it."""
    return isinstance(adapter, PayPalProvider) and adapter.verification_fetches(headers=headers)


def _too_many_refusals(wait: int) -> HttpResponse:
    response = problem_response(
        429,
        "Too many refused webhooks",
        f"Deliveries from this address keep failing verification; retry in {wait} seconds.",
        slug="rate-limited",
    )
    response["Retry-After"] = str(wait)
    return response


def _too_large() -> HttpResponse:
    limit = settings.API_MAX_BODY_BYTES
    return problem_response(413, "Payload too large", f"The limit is {limit} bytes.", slug="payload-too-large")


@method_decorator(csrf_exempt, name="dispatch")
class WebhookReceiveApi(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = problem_response(
            405,
            "Method not allowed",
            f"{request.method} is not allowed; providers POST here.",
            slug="method-not-allowed",
        )
        response["Allow"] = "POST"
        return response

    def post(self, request: HttpRequest, provider: str) -> HttpResponse:
        try:
            if provider == "sandbox" and not settings.SANDBOX_ENABLED:
                raise UnknownProviderError("The sandbox provider is turned off.")
            adapter = get_provider(provider)
        except UnknownProviderError as exc:
            return problem_response(exc.status_code, exc.title, exc.detail, slug=exc.slug)
        headers = dict(request.headers.items())
        if _verification_fetches(adapter, headers):
            wait = _refusals(request, provider, count=False)
            if wait:
                return _too_many_refusals(wait)
        try:
            body = request.body
        except RequestDataTooBig:
            return _too_large()
        if len(body) > settings.API_MAX_BODY_BYTES:
            return _too_large()
        try:
            envelope = adapter.authenticate(body=body, headers=headers)
            unstorable = envelope.unstorable_fields()
            if unstorable:
                raise WebhookPayloadError(f"{', '.join(unstorable)} holds a NUL character or a lone surrogate")
            too_long = event_id_problem(envelope.event_id)
            if too_long:
                raise WebhookPayloadError(too_long)
        except (WebhookSignatureError, WebhookPayloadError) as exc:
            logger.warning("webhook refused", extra={"provider": provider, "reason": exc.detail, "slug": exc.slug})
            wait = _refusals(request, provider, count=True)
            if wait:
                return _too_many_refusals(wait)
            return problem_response(exc.status_code, exc.title, exc.detail, slug=exc.slug)
        result = webhook_event_record(provider=provider, envelope=envelope, body=body, headers=headers)
        return JsonResponse(
            {
                "received": True,
                "duplicate": not result.created,
                "provider": provider,
                "event_id": envelope.event_id,
            }
        )
