"""API routes of the ledger app (mounted under /api/v1/ledger/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.ledger import apis

urlpatterns: list[URLPattern] = [
    path("accounts", apis.LedgerAccountsApi.as_view(), name="ledger-accounts"),
    path("accounts/<int:account_id>", apis.LedgerAccountDetailApi.as_view(), name="ledger-account-detail"),
    path("debits", apis.LedgerDebitCreateApi.as_view(), name="ledger-debit-create"),
    path("debits/batch", apis.LedgerDebitBatchApi.as_view(), name="ledger-debit-batch"),
]
