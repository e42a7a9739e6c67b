"""Platform tasks: a diagnostic echo that shows the request id and tenant reach the worker."""

import logging
from typing import Any

from celery import shared_task

from apps.core.request_context import get_request_id
from apps.tenancy.context import current_tenant_id

logger = logging.getLogger("darkroom.tasks.core")


@shared_task(name="core.echo_context", acks_late=True)
def echo_context() -> dict[str, Any]:
    """Log and return the context the worker restored from the message headers."""
    result = {"request_id": get_request_id(), "tenant_id": current_tenant_id()}
    logger.info("echo_context", extra=result)
    return result
