"""Admin for platform operators: the ledger is read-only here (runs in the system context).

Events, keys and the buffer are append-only, balances and checkpoints are written by the
projector only: nothing can be added, changed or deleted from the admin. Amounts are shown as
money (a balance's currency is its account's).
"""

from django.contrib import admin

from apps.core.admin import ShownInPlace, money_display
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
class LedgerEventAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = ("id", "tenant", "account_id", "kind", "amount_money", "partition", "seq", "created_at")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "reference")
    show_full_result_count = False
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")


@admin.register(AccountBalance)
class AccountBalanceAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = ("account_id", "tenant", "partition", "balance_money", "event_count", "last_seq", "updated_at")
    list_select_related = ("tenant", "account")
    shown_in_place_of = {
        "credits_minor": "credits_money",
        "debits_minor": "debits_money",
        "balance_minor": "balance_money",
    }

    credits_money = money_display("credits_minor", description="credits", currency="account.currency")
    debits_money = money_display("debits_minor", description="debits", currency="account.currency")
    balance_money = money_display("balance_minor", description="balance", currency="account.currency")


@admin.register(LedgerPartitionHead)
class LedgerPartitionHeadAdmin(ReadOnlyAdmin):
    list_display = ("partition", "seq")


@admin.register(LedgerCheckpoint)
class LedgerCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("partition", "seq", "epoch", "leader", "leader_since", "applied_total", "updated_at")


@admin.register(LedgerArchivedTotal)
class LedgerArchivedTotalAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = (
        "account_id",
        "tenant",
        "partition",
        "credits_money",
        "debits_money",
        "event_count",
        "last_seq",
        "archived_through",
    )
    list_select_related = ("tenant", "account")
    shown_in_place_of = {"credits_minor": "credits_money", "debits_minor": "debits_money"}

    credits_money = money_display("credits_minor", description="credits", currency="account.currency")
    debits_money = money_display("debits_minor", description="debits", currency="account.currency")


@admin.register(LedgerDebitBuffer)
class LedgerDebitBufferAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = ("id", "tenant", "account_id", "amount_money", "idempotency_key", "created_at")
    show_full_result_count = False
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")
