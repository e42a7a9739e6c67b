"""One effect per form submission: the Idempotency-Key protocol for server-rendered forms.

A page that renders a form embeds a fresh nonce (`form_nonce()`, a hidden `nonce` field). The
view handling the POST calls `submit_once(...)`, which runs the effect in one transaction with the
key row, exactly like a mutating API request (`apps.idempotency.protocol`): the key is scoped to
tenant + caller (`web-session:<key>` or `user:<pk>`), and the fingerprint covers the path and the
form fields (not the CSRF token, whose masked value may change between two renders). So:

* a double click, a browser retry or a resubmitted POST after a timeout lands on the page the
  first submission chose (303), and nothing is written twice;
* a submission while the first is still in its transaction gets `SubmissionInFlight`;
* the same nonce with different fields (a tampered or stale form) gets `SubmissionConflict`;
* an effect that raises (validation, a domain error) rolls back and stores nothing, so the
  shopper can correct the form and submit again with the same nonce; the flash messages it added
  go with it (`apps.web.messages`).

What is stored is the URL to go to, not the redirect itself: the key store keeps status, body and
content type, and the replay rebuilds the 303 from the body.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from apps.core.problems import DomainError
from apps.core.text import is_storable_text
from apps.idempotency import protocol as idempotency
from apps.idempotency.selectors import idempotency_key_find
from apps.tenancy.context import tenant_context
from apps.web.messages import messages_kept_if_completed

NONCE_FIELD = "nonce"
_NONCE_BYTES = 18
_STORED_CONTENT_TYPE = "text/uri-list"
_NOT_FINGERPRINTED = frozenset({"csrfmiddlewaretoken"})


class SubmissionMissingNonce(DomainError):
    """A form of Darkroom's web pages was sent without the one-time code its page puts in it
    (a page from before an update, or a form posted by a script). Nothing was done."""

    status_code = 400
    slug = "form-nonce-missing"
    title = "Form nonce missing"
    what_to_do = "Reload the page and send the form from it."


class SubmissionInFlight(DomainError):
    """The same form was sent again (a double click, say) while the first submission is still
    being handled."""

    status_code = 409
    slug = "form-in-flight"
    title = "Form still being processed"
    what_to_do = "Wait a moment and reload the page: it shows what the first submission did, which is done once."


class SubmissionConflict(DomainError):
    """A form that was sent before was sent again with other values (a page kept open after it
    was sent, then changed). Nothing of the second submission was done."""

    status_code = 422
    slug = "form-nonce-reused"
    title = "Form already submitted with other values"
    what_to_do = "Reload the page, fill in the form again and send it."


def form_nonce() -> str:
    """A fresh nonce for one rendered form (URL-safe, 24 characters)."""
    return secrets.token_urlsafe(_NONCE_BYTES)


def session_caller(request: HttpRequest) -> str:
    """The key-space owner for an anonymous shopper: the session (created if it has none yet)."""
    if not request.session.session_key:
        request.session.save()
    return f"web-session:{request.session.session_key}"


def _fingerprint_body(request: HttpRequest) -> bytes:
    fields = request.POST.copy()
    for name in _NOT_FINGERPRINTED:
        fields.pop(name, None)
    return idempotency.multipart_canonical_body(fields=fields, files=request.FILES)


def _form_key(nonce: str) -> str:
    return f"form:{nonce}"


def submitted_url(*, tenant_id: int, caller: str, nonce: str) -> str | None:
    """Where the caller's completed submission of the form `nonce` went (the URL its effect
    returned), or None when none completed (never sent, still in flight, or refused)."""
    with tenant_context(tenant_id), transaction.atomic():
        stored = idempotency_key_find(tenant_id=tenant_id, caller=caller, key=_form_key(nonce))
    if stored is None or stored.status >= 400:
        return None
    return bytes(stored.body).decode()


def submit_once(
    request: HttpRequest, *, tenant_id: int, caller: str, effect: Callable[[], str], wait_seconds: float = 0.0
) -> HttpResponse:
    """Run `effect` once per (tenant, caller, form nonce) and redirect (303) to the URL it returns.

    `effect` runs in the tenant's context, inside the transaction that stores the key; it must write only to the
    database (and the outbox) and return a local URL. With `wait_seconds`, the same form still in
    its transaction (a double click) is waited for, polling outside any transaction, for at most
    that long, and this submission then lands where it did. Raises SubmissionMissingNonce,
    SubmissionInFlight (still in flight after the wait), SubmissionConflict, or whatever `effect`
    raises (nothing is stored then).
    """
    deadline = time.monotonic() + wait_seconds
    pause = 0.05
    while True:
        try:
            return _submit_once(request, tenant_id=tenant_id, caller=caller, effect=effect)
        except SubmissionInFlight:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _submit_once(request: HttpRequest, *, tenant_id: int, caller: str, effect: Callable[[], str]) -> HttpResponse:
    nonce = request.POST.get(NONCE_FIELD, "")
    # PostgreSQL text holds no NUL nor lone surrogate: such a nonce was never one of ours.
    if not nonce or len(nonce) > idempotency.MAX_KEY_LENGTH - 5 or not is_storable_text(nonce):
        raise SubmissionMissingNonce("This form has no valid nonce; reload the page and submit it again.")
    try:
        with messages_kept_if_completed(request), tenant_context(tenant_id), transaction.atomic():
            state = idempotency.begin(
                tenant_id=tenant_id,
                caller=caller,
                key=_form_key(nonce),
                method="POST",
                path=request.get_full_path(),
                body=_fingerprint_body(request),
            )
            url = effect()
            if not url_has_allowed_host_and_scheme(url, allowed_hosts=None):
                raise ValueError(f"submit_once effects must return a local URL, not {url!r}")
            stored = idempotency.finish(
                state, HttpResponse(url.encode(), status=200, content_type=_STORED_CONTENT_TYPE)
            )
            if stored.status_code >= 400:
                # The key could not be stored (finish rolled the effect back): nothing happened.
                raise idempotency.IdempotencyKeyInFlight("A concurrent submission of this form completed; retry.")
    except idempotency.IdempotentReplay as replay:
        url = bytes(replay.response.content).decode()
    except idempotency.IdempotencyKeyInFlight as exc:
        raise SubmissionInFlight("This form is still being processed; reload the page in a moment.") from exc
    except idempotency.IdempotencyKeyReused as exc:
        raise SubmissionConflict("This form was already submitted with other values; reload it and try again.") from exc
    return HttpResponseRedirect(url, status=303)
