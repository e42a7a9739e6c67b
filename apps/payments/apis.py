"""`POST /webhooks/<provider>`: the provider-facing endpoint of the webhook event ledger.

A plain Django view, on purpose: no tenant API, no Idempotency-Key (the provider's event id is
the dedupe key), no session or CSRF (providers authenticate by signature), and no
ATOMIC_REQUESTS-style transaction around the handler (record first, process after). It:

1. reads the raw body (oversize: 413; `BodySizeLimitMiddleware` refuses a declared oversize
   body before it is read, and the read itself is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE);
2. verifies the signature on those exact bytes and parses the event (invalid or missing
   signature, malformed body, identifiers PostgreSQL text cannot hold: 400 problem, and nothing
   is recorded);
3. records the event and its outbox message in one short transaction and answers 200 at once,
   for duplicates too (`"duplicate": true`), so the provider stops retrying.
Processing happens later, in the `webhook.received` consumer.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.problems import problem_response
from apps.payments.providers.base import UnknownProviderError, WebhookPayloadError, WebhookSignatureError
from apps.payments.providers.registry import get_provider
from apps.payments.services import webhook_event_record

logger = logging.getLogger("darkroom.payments.webhooks")


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
        try:
            body = request.body
        except RequestDataTooBig:
            return _too_large()
        if len(body) > settings.API_MAX_BODY_BYTES:
            return _too_large()
        headers = dict(request.headers.items())
        try:
            envelope = adapter.authenticate(body=body, headers=headers)
            unstorable = envelope.unstorable_fields()
            if unstorable:
                raise WebhookPayloadError(f"{', '.join(unstorable)} holds a NUL character or a lone surrogate")
        except (WebhookSignatureError, WebhookPayloadError) as exc:
            logger.warning("webhook refused", extra={"provider": provider, "reason": exc.detail, "slug": exc.slug})
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
