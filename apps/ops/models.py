"""Operator controls.

`KillSwitch`: one row per capability (checkout, payouts, drop-in, fan-out). Engaged, the
capability stops taking new work (checkout answers 503) or holds its workers (payout batches,
drop-in jobs, announcement fan-outs wait and resume when it is released). An engaged switch
stays engaged until `cooldown_until` unless released with force: a switch thrown in an incident
is not flipped back and forth. Platform-wide (not tenant data); every change is audited.
"""

from __future__ import annotations

from django.db import models


class Capability(models.TextChoices):
    CHECKOUT = "checkout", "Checkout (new checkouts)"
    PAYOUTS = "payouts", "Payouts (batches and provider calls)"
    DROPIN = "dropin", "Drop-in (face enrolment and photo searches)"
    FANOUT = "fanout", "Announcement fan-out and e-mail"


class KillSwitch(models.Model):
    capability = models.CharField(max_length=20, choices=Capability.choices, unique=True)
    engaged = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True, default="")
    changed_by = models.CharField(max_length=200, blank=True, default="")
    changed_at = models.DateTimeField(null=True, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "kill switches"  # Django's default adds an "s": "kill switchs"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(capability__in=["checkout", "payouts", "dropin", "fanout"]),
                name="ops_killswitch_capability",
            ),
            models.CheckConstraint(
                condition=models.Q(engaged=False) | (models.Q(cooldown_until__isnull=False) & ~models.Q(reason="")),
                name="ops_killswitch_engaged_has_reason_and_cooldown",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.capability}: {'ENGAGED' if self.engaged else 'released'}"
