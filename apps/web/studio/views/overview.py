"""The studio's front page: recent events, recent sales, the signed-in member's wallets, the
payouts on their way and, apart, those held for the platform's operators to review (a payout the
bank returned is not on its way), and a note of their pending invitations to other studios."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.catalog.selectors import events_list
from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.payments.providers.base import money_text
from apps.payouts.models import Payout
from apps.tenancy.selectors import invitations_of_user
from apps.web.studio import selectors
from apps.web.studio.access import Studio, studio_page
from apps.web.studio.views.common import sale_amount_text

RECENT = 5


def _payout_rows(payouts: QuerySet[Payout]) -> list[tuple[Payout, str]]:
    return [
        (payout, money_text(payout.amount_minor, payout.currency))
        for payout in payouts.select_related("owner").order_by("-created_at", "-id")[:RECENT]
    ]


@require_GET
@studio_page()
def overview(request: HttpRequest, studio: Studio) -> HttpResponse:
    events = list(events_list(tenant_id=studio.tenant_id)[:RECENT])
    photo_counts = selectors.photo_counts_of_events(tenant_id=studio.tenant_id, event_ids=[e.pk for e in events])
    sales = list(selectors.sales_of_tenant(tenant_id=studio.tenant_id)[:RECENT]) if studio.can_see_sales else []
    scope_user = None if studio.can_manage_payouts else studio.user.pk
    held = selectors.payouts_held_for_review(tenant_id=studio.tenant_id, user_id=scope_user)
    held_rows = _payout_rows(held)
    context = {
        "studio": studio,
        "events": [(event, photo_counts[event.pk]) for event in events],
        "sales": [(checkout, sale_amount_text(checkout)) for checkout in sales],
        "wallets": selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk),
        "open_payouts": _payout_rows(selectors.payouts_on_their_way(tenant_id=studio.tenant_id, user_id=scope_user)),
        "held_payouts": held_rows,
        "held_count": held.count() if len(held_rows) == RECENT else len(held_rows),
        "payouts_enabled": capability_enabled(Capability.PAYOUTS),
        "invitations": invitations_of_user(user=studio.user),
    }
    return render(request, "studio/overview.html", context)
