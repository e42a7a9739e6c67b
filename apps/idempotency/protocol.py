"""The Idempotency-Key protocol of mutating API requests (IETF httpapi draft, Stripe's behaviour).

`apps.tenancy.apis.TenantApi` drives it for POST/PUT/PATCH/DELETE:

1. right after authentication, `key_from_request` reads the header: missing → 400, empty,
   longer than 255 characters or not printable ASCII → 400;
2. after permissions and the tenant context, the view opens ONE `transaction.atomic()` and
   calls `begin`, which takes `pg_try_advisory_xact_lock` on (tenant, caller, key) — taken by a
   request still in flight → 409 with Retry-After — then looks the key up within retention:
   stored with another fingerprint → 422; stored with this fingerprint → the stored response
   is replayed (`IdempotentReplay`); otherwise the view runs;
3. `finish` renders the response inside that transaction; status < 400 stores the key row (the
   effect and its key commit together or not at all); status >= 400 rolls the whole
   transaction back, so a failed request writes nothing and the client may retry the key.

Why the advisory lock: it serialises every request of one (tenant, caller, key), whatever day
partition its row would land in, which is what keeps a key unique across partitions (Postgres
cannot enforce a unique index across them). It is transaction-scoped, so it is released by the
COMMIT or ROLLBACK that ends the request, and a crashed request never leaves it behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import SimpleTemplateResponse

from apps.core.problems import DomainError, problem_response
from apps.idempotency.selectors import idempotency_key_find
from apps.idempotency.services import idempotency_key_record

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

logger = logging.getLogger("darkroom.idempotency")


class IdempotencyKeyMissing(DomainError):
    """A request that changes something (POST, PUT, PATCH, DELETE) came without an
    Idempotency-Key header. Nothing was written."""

    status_code = 400
    slug = "idempotency-key-missing"
    title = "Idempotency-Key required"
    what_to_do = (
        "Send a new unique value (a UUID, say) in the Idempotency-Key header of each change you mean to "
        "make, and the same value again when you retry that change: it is then applied once."
    )


class IdempotencyKeyInvalid(DomainError):
    """The Idempotency-Key header is empty, longer than 255 characters, or holds characters other
    than printable ASCII. Nothing was written."""

    status_code = 400
    slug = "idempotency-key-invalid"
    title = "Invalid Idempotency-Key"
    what_to_do = f"Send a key of 1 to {MAX_KEY_LENGTH} printable ASCII characters; a UUID is one."


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was sent before with a different request: another method, path or
    body. Nothing was written."""

    status_code = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"
    what_to_do = (
        "Use a new key for a new request. To retry the first request, send it exactly as before with "
        "its key: you get its answer again."
    )


class IdempotencyKeyInFlight(DomainError):
    """A request with this Idempotency-Key is still being handled (a retry sent while the first
    attempt runs, say)."""

    status_code = 409
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is in progress"
    what_to_do = (
        "Wait the number of seconds in the `Retry-After` header, then send the request again with the "
        "same key: once the first attempt is done, you get its answer."
    )

    @property
    def retry_after(self) -> int:
        return int(settings.IDEMPOTENCY_RETRY_AFTER_SECONDS)


class IdempotentReplay(Exception):
    """Raised by `begin` to short-circuit the view with the stored response."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("replay")
        self.response = response


def key_from_request(headers: Any) -> str:
    """The request's Idempotency-Key, validated.

    Accepts a bare token (Stripe) or an RFC 8941 sf-string (the IETF draft: `"..."`); both name
    the same key. Only HTTP's optional whitespace around the value (spaces, tabs) is dropped: any
    other character `str.strip` would take (NBSP, NEL, FS .. US, VT, FF) stays and is refused, so
    "k\xa0" is never the key "k". Raises IdempotencyKeyMissing or IdempotencyKeyInvalid.
    """
    raw = headers.get(HEADER)
    if raw is None:
        raise IdempotencyKeyMissing(f"Mutating requests need an {HEADER} header (a unique value per intent).")
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not value:
        raise IdempotencyKeyInvalid(f"{HEADER} is empty.")
    if len(value) > MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalid(f"{HEADER} is {len(value)} characters long; at most {MAX_KEY_LENGTH} are allowed.")
    if not all(" " <= char <= "~" for char in value):
        raise IdempotencyKeyInvalid(f"{HEADER} must be printable ASCII.")
    return value


def canonical_body(body: bytes) -> bytes:
    """JSON bodies re-serialised with sorted keys and compact separators; other bodies as sent
    (also JSON whose strings are not Unicode text: the parser refuses it with a 400 later)."""
    if not body:
        return b""
    try:
        parsed = json.loads(body)
        return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (UnicodeDecodeError, UnicodeEncodeError, ValueError):
        return body


def multipart_canonical_body(*, fields: Any, files: Any) -> bytes:
    """A canonical stand-in for a multipart body: form fields plus a streamed sha256 per file.

    Uploads can be far larger than what may be held in memory, so the raw body is never read;
    files are hashed chunk by chunk from Django's upload handlers (memory or temp file).
    """
    canonical_fields = {name: fields.getlist(name) for name in sorted(fields.keys())}
    canonical_files: dict[str, list[str]] = {}
    for name in sorted(files.keys()):
        hashes = []
        for upload in files.getlist(name):
            digest = hashlib.sha256()
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
            hashes.append(f"{upload.name}:{upload.size}:{digest.hexdigest()}")
        canonical_files[name] = hashes
    payload = {"multipart": {"fields": canonical_fields, "files": canonical_files}}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """sha256 over method, path (with query string) and canonical body, hex."""
    digest = hashlib.sha256()
    digest.update(method.upper().encode())
    digest.update(b"\n")
    digest.update(path.encode())
    digest.update(b"\n")
    digest.update(canonical_body(body))
    return digest.hexdigest()


def lock_id(*, tenant_id: int, caller: str, key: str) -> int:
    """The signed 64-bit advisory lock id of (tenant, caller, key)."""
    digest = hashlib.sha256(f"idempotency\x00{tenant_id}\x00{caller}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class IdempotentRequest:
    """A request that holds its key's lock and has no stored outcome yet."""

    tenant_id: int
    caller: str
    key: str
    fingerprint: str
    method: str
    path: str


def begin(*, tenant_id: int, caller: str, key: str, method: str, path: str, body: bytes) -> IdempotentRequest:
    """Lock (tenant, caller, key) for this transaction and decide whether the view may run.

    Must run inside the request's transaction (the lock and the later key row live in it).
    Raises IdempotencyKeyInFlight when another transaction holds the lock, IdempotencyKeyReused
    when the stored request had another fingerprint, IdempotentReplay with the stored response.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("idempotency.begin must run inside the request's transaction")
    fingerprint = request_fingerprint(method=method, path=path, body=body)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id(tenant_id=tenant_id, caller=caller, key=key)])
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise IdempotencyKeyInFlight(
            "A request with this Idempotency-Key is still being processed; retry after it completes."
        )
    stored = idempotency_key_find(tenant_id=tenant_id, caller=caller, key=key)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a different request (method, path or body); use a new key."
            )
        response = HttpResponse(stored.body, status=stored.status, content_type=stored.content_type)
        response[REPLAYED_HEADER] = "true"
        raise IdempotentReplay(response)
    return IdempotentRequest(
        tenant_id=tenant_id, caller=caller, key=key, fingerprint=fingerprint, method=method, path=path
    )


def finish(state: IdempotentRequest | None, response: HttpResponseBase) -> HttpResponseBase:
    """Store the outcome with the effect (status < 400) or roll the request back (>= 400).

    Runs inside the request's transaction, before it commits. `state` is None when `begin` did
    not let the view run (409/422/replay): nothing to store, and an error rolls back.
    """
    if response.status_code >= 400:
        transaction.set_rollback(True)
        return response
    if state is None:
        return response
    if response.streaming:
        transaction.set_rollback(True)
        logger.error("streaming response under the idempotency protocol", extra={"path": state.path})
        return problem_response(
            500, "Internal server error", "This endpoint cannot be replayed.", slug="internal-error"
        )
    if isinstance(response, SimpleTemplateResponse):
        response.render()  # the bytes we store are the bytes the client receives
    try:
        idempotency_key_record(
            tenant_id=state.tenant_id,
            caller=state.caller,
            key=state.key,
            fingerprint=state.fingerprint,
            method=state.method,
            path=state.path,
            status=response.status_code,
            body=bytes(response.content),  # type: ignore[attr-defined]
            content_type=response.get("Content-Type", ""),
        )
    except IntegrityError:
        # Another request stored this key although we held its lock: keep no second effect.
        transaction.set_rollback(True)
        logger.exception("idempotency key stored twice", extra={"caller": state.caller})
        conflict = IdempotencyKeyInFlight("A concurrent request with this Idempotency-Key completed; retry.")
        problem = problem_response(409, conflict.title, conflict.detail, slug=conflict.slug)
        problem["Retry-After"] = str(conflict.retry_after)
        return problem
    return response
