"""Adds request_id and tenant_id to every log record, so each JSON line carries them, and keeps
credentials that travel in URL paths out of the logs."""

import logging
from typing import Any

from apps.core.request_context import get_request_id
from apps.tenancy.context import current


class ContextFilter(logging.Filter):
    """The request id comes from the current unit of work, or else from the request the record
    names: Django logs a 4xx/5xx (`django.request`, `log_response`) after the whole middleware
    chain has returned, when `RequestIdMiddleware` has already left the request's context (it must,
    so that a reused thread never carries one request's id into the next), but passes the request
    itself in the record's `extra`, and the middleware put the id on it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = get_request_id() or getattr(getattr(record, "request", None), "request_id", None)
        if not hasattr(record, "tenant_id"):
            record.tenant_id = current().tenant_id
        return True


# URL parameters that are credentials: the bearer tokens of order links, download links and
# attendee pages, and a password-reset link's user id and token. Whoever reads them opens the
# order, downloads the originals or sets the password, so they are never written to a log.
SECRET_URL_KWARGS = frozenset({"token", "uidb64"})
REDACTED = "[redacted]"


def loggable_path(request: Any) -> str:
    """`request.path` with the values of its secret URL parameters (SECRET_URL_KWARGS) replaced
    by "[redacted]"; the path as it is when it matched no route."""
    path = str(getattr(request, "path", ""))
    match = getattr(request, "resolver_match", None)
    for name, value in match.kwargs.items() if match is not None else ():
        if name in SECRET_URL_KWARGS and isinstance(value, str) and value:
            path = path.replace(value, REDACTED)
    return path


class RedactSecretPaths(logging.Filter):
    """Django's own request records (`django.request`: "Not Found: <path>" and the like) name the
    path in their arguments and carry the request itself, which the JSON formatter would write
    out as "<WSGIRequest: GET '<path>'>": both are redacted like the access log's path. The
    request's id is kept on the record first (ContextFilter reads it from the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is None or isinstance(request, str):
            return True
        path = getattr(request, "path", None)
        safe = loggable_path(request)
        if path and isinstance(record.args, tuple):
            record.args = tuple(safe if arg == path else arg for arg in record.args)
        if not getattr(record, "request_id", None):
            record.request_id = getattr(request, "request_id", None)
        record.request = f"{getattr(request, 'method', '')} {safe}"
        return True
