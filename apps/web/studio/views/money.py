"""Money pages: the studio's sales, the signed-in member's wallet and payouts, payout requests,
and (owners) where each photographer is paid."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.payments.providers.base import PayoutDestinationError
from apps.payouts.services import NotAMember, payout_destination_set, payout_wallet_request
from apps.tenancy.models import User
from apps.web.studio import selectors
from apps.web.studio.access import PAYOUT_MANAGE_ROLES, SALES_ROLES, Studio, studio_page
from apps.web.studio.forms import DestinationForm, PayoutRequestForm
from apps.web.studio.views.common import page_of, submit


@require_GET
@studio_page(*SALES_ROLES)
def sales(request: HttpRequest, studio: Studio) -> HttpResponse:
    page = page_of(request, selectors.sales_of_tenant(tenant_id=studio.tenant_id))
    rows = [(checkout, selectors.money(checkout.amount_minor, checkout.currency)) for checkout in page]
    return render(request, "studio/sales.html", {"studio": studio, "page": page, "rows": rows})


def _wallet_choices(wallets: list[selectors.WalletView]) -> list[tuple[int, str]]:
    return [(w.account_id, w.label) for w in wallets]


def _render_wallet(
    request: HttpRequest,
    studio: Studio,
    *,
    status: int = 200,
    request_form: PayoutRequestForm | None = None,
    destination_form: DestinationForm | None = None,
) -> HttpResponse:
    tenant_id = studio.tenant_id
    wallets = selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk)
    currency_of = {w.account_id: w.currency for w in wallets}
    entries = selectors.wallet_entries(tenant_id=tenant_id, account_ids=list(currency_of))
    own_payouts = page_of(request, selectors.payouts_of_owner(tenant_id=tenant_id, user_id=studio.user.pk))
    context: dict[str, Any] = {
        "studio": studio,
        "wallets": wallets,
        "entries": [(e, selectors.money(e.amount_minor, e.currency)) for e in entries],
        "payouts": [(p, selectors.money(p.amount_minor, p.currency)) for p in own_payouts],
        "payouts_page": own_payouts,
        "destination": selectors.destination_of(tenant_id=tenant_id, user_id=studio.user.pk),
        "payouts_enabled": capability_enabled(Capability.PAYOUTS),
        "minimum": " / ".join(selectors.money(int(settings.PAYOUT_MINIMUM_MINOR), w.currency) for w in wallets)
        or f"{int(settings.PAYOUT_MINIMUM_MINOR)} minor units",
        "request_form": request_form or (PayoutRequestForm(wallets=_wallet_choices(wallets)) if wallets else None),
    }
    if studio.can_manage_payouts:
        members = selectors.members_of_tenant(tenant_id=tenant_id)
        context["destination_form"] = destination_form or DestinationForm(members=members)
        context["destinations"] = list(selectors.destinations_of_studio(tenant_id=tenant_id))
        context["studio_payouts"] = [
            (p, selectors.money(p.amount_minor, p.currency))
            for p in selectors.payouts_of_studio(tenant_id=tenant_id)[:50]
        ]
    return render(request, "studio/wallet.html", context, status=status)


@require_GET
@studio_page()
def wallet(request: HttpRequest, studio: Studio) -> HttpResponse:
    return _render_wallet(request, studio)


@require_POST
@studio_page()
def wallet_payout_request(request: HttpRequest, studio: Studio) -> HttpResponse:
    """Ask to be paid now (this wallet only): checked against the payout rules and the payouts
    kill switch; a worker pays it once no payout run holds the payout lease."""
    wallets = selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk)
    form = PayoutRequestForm(request.POST, wallets=_wallet_choices(wallets))

    def effect() -> str:
        account_id = form.cleaned_data["account"]
        balance = payout_wallet_request(tenant_id=studio.tenant_id, account_id=account_id, actor=studio.user)
        currency = next(w.currency for w in wallets if w.account_id == account_id)
        messages.success(
            request,
            f"Payout requested: your balance ({selectors.money(balance, currency)}) is sent to your payout "
            "destination shortly, after any payout run in progress. It appears below once made.",
        )
        return reverse("studio:wallet")

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_wallet(request, studio, status=status, request_form=form),
    )


@require_POST
@studio_page(*PAYOUT_MANAGE_ROLES)
def wallet_destination(request: HttpRequest, studio: Studio) -> HttpResponse:
    """Owners: set where a member of the studio is paid (validated by the provider's adapter)."""
    form = DestinationForm(request.POST, members=selectors.members_of_tenant(tenant_id=studio.tenant_id))

    def effect() -> str:
        data = form.cleaned_data
        owner = User.objects.get(pk=data["member"])
        payout_destination_set(
            tenant=studio.org,
            owner=owner,
            provider=data["provider"],
            destination=data["destination"],
            actor=studio.user,
            actor_label=studio.caller,
        )
        messages.success(request, f"Payout destination of {owner.get_username()} saved.")
        return reverse("studio:wallet") + "#destinations"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_wallet(request, studio, status=status, destination_form=form),
        error_fields={PayoutDestinationError: "destination", NotAMember: "member"},
    )
