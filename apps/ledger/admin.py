"""Admin for platform operators: the ledger is read-only here (runs in the system context).

Events, keys and the buffer are append-only, balances and checkpoints are written by the
projector only: nothing can be added, changed or deleted from the admin.
"""

from django.contrib import admin

from apps.core.admin_base import ReadOnlyAdmin
from apps.ledger.models import (
    AccountBalance,
    LedgerAccount,
    LedgerArchivedTotal,
    LedgerCheckpoint,
    LedgerDebitBuffer,
    LedgerEvent,
    LedgerPartitionHead,
)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "kind", "currency", "client_id", "owner", "created_at")
    list_select_related = ("tenant", "owner")  # `owner` is nullable: not joined by default
    list_filter = ("kind", "currency")
    search_fields = ("client_id",)


@admin.register(LedgerEvent)
class LedgerEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "account_id", "kind", "amount_minor", "currency", "partition", "seq", "created_at")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "reference")
    show_full_result_count = False


@admin.register(AccountBalance)
class AccountBalanceAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "tenant", "partition", "balance_minor", "event_count", "last_seq", "updated_at")


@admin.register(LedgerPartitionHead)
class LedgerPartitionHeadAdmin(ReadOnlyAdmin):
    list_display = ("partition", "seq")


@admin.register(LedgerCheckpoint)
class LedgerCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("partition", "seq", "epoch", "leader", "leader_since", "applied_total", "updated_at")


@admin.register(LedgerArchivedTotal)
class LedgerArchivedTotalAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "tenant", "partition", "event_count", "last_seq", "archived_through")


@admin.register(LedgerDebitBuffer)
class LedgerDebitBufferAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "account_id", "amount_minor", "currency", "idempotency_key", "created_at")
    show_full_result_count = False
