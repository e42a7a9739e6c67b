"""System checks of the payout settings (run by `manage.py check`, `migrate` and every worker)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def payout_claim_outlives_the_task(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A payout's claim must outlive the task that holds it: a claim that lapses while its
    provider call still runs would let a second attempt send the same payout meanwhile."""
    claim = float(settings.PAYOUT_SUBMIT_CLAIM_SECONDS)
    limit = float(settings.CELERY_TASK_TIME_LIMIT)
    if claim <= limit:
        return [
            Error(
                f"DARKROOM_PAYOUT_SUBMIT_CLAIM_SECONDS ({claim:g}) must exceed CELERY_TASK_TIME_LIMIT ({limit:g}).",
                hint="Raise the claim or lower the task time limit.",
                id="payouts.E001",
            )
        ]
    return []
