"""`flush`, redirected to the owner connection where settings ask for it (tests).

The runtime role may not TRUNCATE (append-only tables revoke it), so transactional tests
flush through the owner alias named by `DATABASE_FLUSH_ALIAS`.
"""

from typing import Any

from django.conf import settings
from django.core.management.commands.flush import Command as DjangoFlush


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        flush_alias = getattr(settings, "DATABASE_FLUSH_ALIAS", None)
        if flush_alias and options.get("database") == "default":
            options["database"] = flush_alias
        super().handle(**options)
