"""The ledger: accounts, the append-only event store, its projections and their bookkeeping.

Source of truth: `LedgerEvent`, append-only (pgtrigger protection for everyone plus UPDATE,
DELETE and TRUNCATE revoked from the runtime role, see `APPEND_ONLY`), physically
range-partitioned by month on `created_at` (database primary key `(id, created_at)`; Django's
state keeps `id`). Everything else is derived or bookkeeping:

* `LedgerEventKey` is the idempotency guard. A partitioned table cannot enforce a unique key
  that does not contain the partition column, so `(tenant, account, idempotency_key)` lives
  in this ordinary table with a real unique constraint. The append transaction inserts the
  keys first (`ON CONFLICT DO NOTHING RETURNING`); only keys that come back get an event, in
  the same transaction. A concurrent append of the same key blocks on the uncommitted index
  entry and then sees the conflict, so a key maps to at most one event, across months.
  `event_id` is drawn from the event id sequence by the key row's default, so the event can
  be inserted with that id and the key row never needs an UPDATE.
* `LedgerPartitionHead` holds, per logical partition, the last sequence number handed out.
  Appending takes `UPDATE ... SET seq = seq + n RETURNING seq` (an upsert) inside the append
  transaction; the row lock is held until COMMIT, so appenders of one partition commit in
  sequence order, and the committed head value is a gap-free, fully visible high-water mark.
* `LedgerCheckpoint` is the projector's position per logical partition and its fencing epoch.
* `AccountBalance` is the projection: one row per (account, logical partition), so the
  leaders of different partitions never write the same row. An account's balance is the sum.
* `LedgerArchivedTotal` folds in events of physical partitions dropped by the retention job,
  so a rebuild (archived totals + replay of what remains) still equals the live projection.
* `LedgerDebitBuffer`, `LedgerBufferDrained`, `LedgerDrainCursor`: the degraded-mode
  fallback (no unique check, no partition lock) and the drain's bookkeeping, see `services`.
"""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.payments.providers.base import money_text
from apps.tenancy.models import Organization, TenantModel

CURRENCY_RE = r"^[A-Z]{3}$"
EVENT_TABLE = "ledger_ledgerevent"
EVENT_ID_SEQUENCE = "ledger_ledgerevent_id_seq"


class LedgerAccount(TenantModel):
    """A money account of a studio: a photographer wallet, a usage account or a platform account."""

    class Kind(models.TextChoices):
        WALLET = "wallet", "Wallet"
        USAGE = "usage", "Usage"
        PLATFORM = "platform", "Platform"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    client_id = models.CharField(max_length=100, blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["wallet", "usage", "platform"]), name="ledger_account_kind"
            ),
            models.CheckConstraint(condition=models.Q(currency__regex=CURRENCY_RE), name="ledger_account_currency"),
            # Target of the composite (tenant_id, account_id) foreign keys of events, keys and buffer.
            models.UniqueConstraint(fields=["tenant", "id"], name="ledger_account_tenant_id_uniq"),
            # One account per platform charge and currency (RESERVED_CLIENT_PREFIX in services).
            models.UniqueConstraint(
                fields=["tenant", "client_id", "currency"],
                condition=models.Q(client_id__startswith="darkroom:"),
                name="ledger_account_one_reserved_per_currency",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.pk} ({self.currency})"


class LedgerEvent(TenantModel):
    """One credit or debit. Never updated or deleted.

    Physical storage: `PARTITION BY RANGE (created_at)`, one partition per month, database
    primary key `(id, created_at)` (created in the migration with RunSQL). `partition` is the
    *logical* partition (projector unit), `seq` its gap-free sequence, equal to commit order.
    """

    APPEND_ONLY = True
    # No tenant index: every write pays for each index, and no read filters by tenant alone.
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )

    class Kind(models.TextChoices):
        CREDIT = "credit", "Credit"
        DEBIT = "debit", "Debit"

    id = models.BigAutoField(primary_key=True)
    # Enforced by the composite FK (tenant_id, account_id) -> account (tenant_id, id), see the migration.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    kind = models.CharField(max_length=6, choices=Kind.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    client_id = models.CharField(max_length=100, blank=True, default="")
    reference = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    partition = models.IntegerField()
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="ledger_event_amount_positive"),
            models.CheckConstraint(condition=models.Q(kind__in=["credit", "debit"]), name="ledger_event_kind"),
            models.CheckConstraint(condition=models.Q(currency__regex=CURRENCY_RE), name="ledger_event_currency"),
            models.CheckConstraint(condition=models.Q(partition__gte=0), name="ledger_event_partition"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="ledger_event_seq"),
        ]
        indexes = [
            models.Index(fields=["partition", "seq"], name="ledger_event_partition_seq"),
            models.Index(fields=["account", "created_at"], name="ledger_event_account_created"),
        ]
        triggers = [
            pgtrigger.Protect(name="ledger_event_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return (
            f"{self.kind} of {money_text(self.amount_minor, self.currency)} on account {self.account_id}"
            f" ({self.partition}:{self.seq})"
        )


class LedgerEventKey(TenantModel):
    """The cross-partition idempotency guard of `LedgerEvent` (see the module docstring)."""

    # The unique/partition keys lead with tenant_id; a separate tenant index would only cost writes.
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )

    APPEND_ONLY = True

    # Enforced by the composite FK (tenant_id, account_id) -> account (tenant_id, id), see the migration.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    idempotency_key = models.CharField(max_length=255)
    # Defaults to nextval of the event id sequence (set in the migration).
    event_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "account", "idempotency_key"], name="ledger_eventkey_unique"),
        ]
        triggers = [
            pgtrigger.Protect(name="ledger_eventkey_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.idempotency_key} -> {self.event_id}"


class LedgerPartitionHead(models.Model):
    """Last sequence handed out in a logical partition (platform row; no tenant).

    The row lock taken by the append's upsert serialises appenders of the partition until they
    commit: commit order = sequence order. `seq` never decreases and the row is never deleted.
    """

    partition = models.IntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(seq__gte=0), name="ledger_head_seq")]
        triggers = [
            pgtrigger.Protect(name="ledger_head_never_deleted", operation=pgtrigger.Delete),
            pgtrigger.Protect(
                name="ledger_head_seq_never_decreases",
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(new__seq__lt=pgtrigger.F("old__seq")),
            ),
        ]

    def __str__(self) -> str:
        return f"partition {self.partition} @ {self.seq}"


class LedgerCheckpoint(models.Model):
    """Projector position and leadership fence of one logical partition (platform row).

    `seq`: every event of the partition with a sequence <= seq is in `AccountBalance`.
    `epoch`: bumped by each new leader (and by a rebuild); an apply commits only
    `WHERE epoch = <the applier's epoch>`, so a deposed leader's write changes nothing.
    `epoch` never decreases and the row is never deleted (enforced by triggers).
    """

    partition = models.IntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0)
    epoch = models.BigIntegerField(default=0)
    leader = models.CharField(max_length=200, blank=True, default="")
    leader_backend_pid = models.IntegerField(null=True, blank=True)
    leader_since = models.DateTimeField(null=True, blank=True)
    applied_total = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        triggers = [
            pgtrigger.Protect(name="ledger_checkpoint_never_deleted", operation=pgtrigger.Delete),
            pgtrigger.Protect(
                name="ledger_checkpoint_epoch_never_decreases",
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(new__epoch__lt=pgtrigger.F("old__epoch")),
            ),
        ]

    def __str__(self) -> str:
        return f"partition {self.partition} @ {self.seq} (epoch {self.epoch})"


class AccountBalance(TenantModel):
    """Projected totals of one account from one logical partition (written by its leader only)."""

    # The unique/partition keys lead with tenant_id; a separate tenant index would only cost writes.
    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)

    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="balances", db_index=False)
    partition = models.IntegerField()
    credits_minor = models.BigIntegerField(default=0)
    debits_minor = models.BigIntegerField(default=0)
    balance_minor = models.BigIntegerField(default=0)
    event_count = models.BigIntegerField(default=0)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "account", "partition"], name="ledger_balance_unique"),
        ]
        indexes = [models.Index(fields=["account"], name="ledger_balance_account")]

    def __str__(self) -> str:
        # (reads the account for its currency: the admin's list joins it)
        balance = money_text(self.balance_minor, self.account.currency)
        return f"balance of account {self.account_id} (partition {self.partition}): {balance}"


class LedgerArchivedTotal(TenantModel):
    """Totals of events whose physical partition was archived and dropped (see `archive`)."""

    # The unique/partition keys lead with tenant_id; a separate tenant index would only cost writes.
    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)

    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+", db_index=False)
    partition = models.IntegerField()
    credits_minor = models.BigIntegerField(default=0)
    debits_minor = models.BigIntegerField(default=0)
    event_count = models.BigIntegerField(default=0)
    last_seq = models.BigIntegerField(default=0)
    archived_through = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "account", "partition"], name="ledger_archived_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}[{self.partition}] archived {self.event_count}"


class LedgerDebitBuffer(TenantModel):
    """Degraded-mode intake: debits accepted without the unique check or the partition lock.

    Append-only. The migration adds a column `xid xid8 DEFAULT pg_current_xact_id()` (not in
    Django's state) and an index on (xid, id): the drain reads rows in that order and marks
    each drained row (`LedgerBufferDrained`); its cursor only passes rows below the snapshot's
    xmin, so a row whose transaction commits late is never passed over.
    """

    APPEND_ONLY = True
    # No tenant index: every write pays for each index, and no read filters by tenant alone.
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )

    # Enforced by the composite FK (tenant_id, account_id) -> account (tenant_id, id), see the migration.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    client_id = models.CharField(max_length=100, blank=True, default="")
    reference = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="ledger_buffer_amount_positive"),
        ]
        triggers = [
            pgtrigger.Protect(name="ledger_buffer_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"buffered debit of {money_text(self.amount_minor, self.currency)} on account {self.account_id}"


class LedgerBufferDrained(models.Model):
    """A buffered debit that the drain moved into the ledger (written in the same transaction).

    Platform row (it names a buffer row and an event id only). `event_id` is the event the
    debit became or duplicated (null only if that event is unknown, e.g. archived).
    """

    buffer_id = models.BigIntegerField(primary_key=True)
    event_id = models.BigIntegerField(null=True, blank=True)
    drained_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"buffer {self.buffer_id} -> event {self.event_id}"


class LedgerDrainCursor(models.Model):
    """Scan start of the drain: every buffer row at or before (last_xid, last_id) is drained."""

    name = models.CharField(max_length=50, primary_key=True)
    last_xid = models.BigIntegerField(default=0)
    last_id = models.BigIntegerField(default=0)
    drained_total = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ ({self.last_xid}, {self.last_id})"
