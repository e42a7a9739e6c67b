"""Adds request_id and tenant_id to every log record, so each JSON line carries them."""

import logging

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
