"""Platform tasks: a diagnostic echo that shows the request id and tenant reach the worker, and
which database backend the worker's connection is on."""

import logging
from typing import Any

from celery import shared_task
from django.db import connection

from apps.core.request_context import get_request_id
from apps.tenancy.context import current_tenant_id

logger = logging.getLogger("darkroom.tasks.core")


@shared_task(name="core.echo_context", acks_late=True)
def echo_context() -> dict[str, Any]:
    """Log and return the context the worker restored from the message headers, and the process
    id of the PostgreSQL backend serving the worker's connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend_pid,) = cursor.fetchone()
    result = {"request_id": get_request_id(), "tenant_id": current_tenant_id(), "db_backend_pid": backend_pid}
    logger.info("echo_context", extra=result)
    return result
