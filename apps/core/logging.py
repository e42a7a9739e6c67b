"""Adds request_id and tenant_id to every log record, so each JSON line carries them."""

import logging

from apps.core.request_context import get_request_id
from apps.tenancy.context import current


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = get_request_id()
        if not hasattr(record, "tenant_id"):
            record.tenant_id = current().tenant_id
        return True
