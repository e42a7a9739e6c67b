"""System checks of the tenancy settings (run by `manage.py check`, `migrate` and every worker)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

INVITATION_TTL_DAYS_RANGE = (1, 365)
INVITATION_EXPIRED_KEEP_DAYS_RANGE = (0, 365)


@register()
def invitation_settings_are_sane(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An invitation is valid for at least a day (a person must have time to answer it) and at
    most a year (else the old-invitation problem comes back); an expired one is kept for the
    studio to see for 0 to 365 days. Refused at start-up, not when the first invitation is sent."""
    errors = []
    bounds = (
        ("DARKROOM_STUDIO_INVITATION_TTL_DAYS", settings.STUDIO_INVITATION_TTL_DAYS, INVITATION_TTL_DAYS_RANGE, "E001"),
        (
            "DARKROOM_STUDIO_INVITATION_EXPIRED_KEEP_DAYS",
            settings.STUDIO_INVITATION_EXPIRED_KEEP_DAYS,
            INVITATION_EXPIRED_KEEP_DAYS_RANGE,
            "E002",
        ),
    )
    for name, value, (low, high), code in bounds:
        if not (isinstance(value, int) and low <= value <= high):
            errors.append(
                Error(
                    f"{name} ({value!r}) must be a whole number of days from {low} to {high}.",
                    hint=f"Set it between {low} and {high}, or unset it for the default.",
                    id=f"tenancy.{code}",
                )
            )
    return errors
