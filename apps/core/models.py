"""Platform rows of the core app: the fencing lease behind `apps.core.locks`.

`Lease` is a platform table (no `tenant_id`, hence no RLS): one row per lock name, whatever
tenant the protected work belongs to. Rows are written only through `apps.core.locks`.

Invariant: a lease's `epoch` never goes down and its row is never deleted, so an epoch is
never handed out twice for one name. Both are enforced by triggers, not by convention: a
deleted-and-recreated row would restart at 1 and let a long-stale holder of epoch 1 pass the
fence again.
"""

from __future__ import annotations

import pgtrigger
from django.db import models
from django.utils import timezone


class Lease(models.Model):
    """Who holds the "one worker at a time" lock `name`, and under which fencing epoch.

    `epoch` increases by one on every acquisition (committed before the holder starts work);
    `holder`, `acquired_at`, `expires_at` and `released_at` describe the latest acquisition and
    are informational (the Redis key is what excludes workers, the epoch is what fences writes).
    """

    name = models.CharField(max_length=200, primary_key=True)
    epoch = models.BigIntegerField()
    holder = models.CharField(max_length=200)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "core_lease"
        constraints = [
            models.CheckConstraint(condition=models.Q(epoch__gte=1), name="lease_epoch_positive"),
        ]
        triggers = [
            pgtrigger.Protect(name="lease_never_deleted", operation=pgtrigger.Delete),
            pgtrigger.Protect(
                name="lease_epoch_never_decreases",
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(new__epoch__lt=pgtrigger.F("old__epoch")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.epoch}"

    @property
    def state(self) -> str:
        """`released`, `expired` (by the TTL recorded at acquisition/extend) or `held`."""
        if self.released_at is not None:
            return "released"
        if self.expires_at <= timezone.now():
            return "expired"
        return "held"
