"""Message-IDs of the e-mails Darkroom sends.

Every e-mail that may be sent a second time (its sender died between sending and recording it)
carries a Message-ID fixed by what it is about, so mail clients show the copies as one message.
The right-hand side is the public site's host (DARKROOM_PUBLIC_BASE_URL).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def mail_message_id(local_part: str) -> str:
    """`<local_part@host>`, the host being the public site's (or "darkroom" without one)."""
    host = urlsplit(str(settings.DARKROOM_PUBLIC_BASE_URL)).hostname or "darkroom"
    return f"<{local_part}@{host}>"
