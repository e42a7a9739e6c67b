"""Payouts: money leaves a photographer's wallet for the account the studio set for them.

* `PayoutDestination`: where a photographer of a studio is paid (provider + that provider's
  account reference), one per (studio, photographer).
* `PayoutBatch`: one run over the due wallets (platform row, no tenant). At most one batch is
  `running` (a partial unique index); its `epoch` is the fencing epoch of the lease
  (`apps.core.locks`, name `payouts:batch`) of the runner that last wrote to it. A runner that
  crashed leaves the batch `running`; the next batch run finishes it. A photographer's request
  is a batch of one wallet (`trigger` names the request), created `completed` in the same
  transaction as its payout, under the same lease: it is never left running and leaves a
  crashed batch to the next batch run.
* `Payout`: one per (batch, wallet), written in ONE transaction with the wallet's ledger debit
  (idempotency key `payout:<id>`) and its outbox message. The provider is called afterwards,
  outside any transaction, with the payout id as its idempotency key; a payout the provider
  refuses for good gets its debit reversed by a ledger credit (`payout-reversal:<id>`).
  Life cycle: pending → paid | submitted (the provider settles later) | failed (refused for
  certain: credited back) | needs_review (the provider's answer leaves it unknown whether money
  moved, or it could not be sent within PAYOUT_RETRY_WINDOW_HOURS: an operator settles it with
  the provider, then marks it paid or failed). An attempt claims the payout (`claimed_until`)
  before calling the provider, so two workers never call it for one payout at once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.ledger.models import LedgerAccount
from apps.outbox.models import uuid7
from apps.payments.providers.base import money_text
from apps.tenancy.models import TenantModel

PROVIDER_CHOICES = [("sandbox", "Sandbox"), ("stripe", "Stripe"), ("paypal", "PayPal"), ("flutterwave", "Flutterwave")]


class PayoutDestination(TenantModel):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=20, choices=PROVIDER_CHOICES)
    # Stripe connected account (acct_...), PayPal receiver e-mail, Flutterwave "<bank>:<account>".
    destination = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "owner"], name="payouts_destination_one_per_owner"),
            models.CheckConstraint(
                condition=models.Q(provider__in=[p for p, _ in PROVIDER_CHOICES]), name="payouts_destination_provider"
            ),
            models.CheckConstraint(condition=~models.Q(destination=""), name="payouts_destination_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.destination} for user {self.owner_id}"


class PayoutBatch(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=200)
    epoch = models.BigIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    payouts_created = models.IntegerField(default=0)
    runs = models.IntegerField(default=1)
    # A photographer's request (one wallet), not a run over every due wallet: it says nothing
    # about whether the scheduled batches complete (`darkroom_payout_batch_last_completed_age_seconds`).
    wallet_request = models.BooleanField(default=False, db_default=False)

    class Meta:
        verbose_name_plural = "payout batches"
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="payouts_one_running_batch"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["running", "completed"]), name="payouts_batch_status"
            ),
            models.CheckConstraint(
                condition=models.Q(status="completed", completed_at__isnull=False)
                | models.Q(status="running", completed_at__isnull=True),
                name="payouts_batch_completed_at_iff_completed",
            ),
        ]

    def __str__(self) -> str:
        return f"payout batch {self.pk} ({self.status})"


class Payout(TenantModel):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUBMITTED = "submitted", "Submitted"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        NEEDS_REVIEW = "needs_review", "Needs review"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    batch = models.ForeignKey(PayoutBatch, on_delete=models.PROTECT, related_name="payouts")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=20, choices=PROVIDER_CHOICES)
    destination = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # NULL until the provider answers: the unique constraint then holds among the ids it gave.
    provider_payout_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    debit_event_id = models.BigIntegerField()
    reversal_event_id = models.BigIntegerField(null=True, blank=True)
    attempts = models.IntegerField(default=0)  # provider calls started (claims)
    claimed_until = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(null=True, blank=True)  # last asked of the provider (submitted)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the provider reported this payout paid after it had failed and been credited back: the
    # photographer may be paid twice (`darkroom_payouts_paid_after_failure_total`; runbook
    # "Payouts"). It stays `failed`.
    paid_after_failure_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "account"], name="payouts_one_per_batch_and_wallet"),
            models.UniqueConstraint(
                fields=["provider", "provider_payout_id"], name="payouts_provider_payout_id_unique"
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="payouts_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "submitted", "paid", "failed", "needs_review"]),
                name="payouts_status",
            ),
            # Paid or submitted as the provider said, with its id; or marked paid by an operator.
            models.CheckConstraint(
                condition=~models.Q(status__in=["submitted", "paid"])
                | models.Q(provider_payout_id__isnull=False)
                | (models.Q(status="paid") & ~models.Q(resolved_by="")),
                name="payouts_sent_has_provider_id",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="failed") | models.Q(reversal_event_id__isnull=False),
                name="payouts_failed_is_reversed",
            ),
        ]
        indexes = [
            # The lost-message sweep: pending payouts by when they were last queued.
            models.Index(fields=["queued_at"], name="payouts_pending_queued", condition=models.Q(status="pending")),
            # The settle task: submitted payouts by when they were last asked about.
            models.Index(
                fields=["checked_at", "created_at"],
                name="payouts_submitted_checked",
                condition=models.Q(status="submitted"),
            ),
        ]

    def __str__(self) -> str:
        return f"payout {self.id}: {money_text(self.amount_minor, self.currency)} ({self.get_status_display()})"
