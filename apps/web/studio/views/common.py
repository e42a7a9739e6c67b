"""What every studio form view shares: run a valid form's effect once, show refusals in the form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse

from apps.commerce.models import Checkout
from apps.core.problems import DomainError
from apps.payments.providers.base import money_text
from apps.web.studio.access import Studio
from apps.web.submit_once import submit_once

PAGE_SIZE = 25


def show_refusal(
    form: forms.Form, exc: DomainError, *, field_map: Mapping[str, str] | None = None, field: str | None = None
) -> None:
    """Put a service's refusal into the form: its field errors (`extra["errors"]`, names mapped by
    `field_map`) on those fields, anything else on `field` or the form as a whole."""
    field_map = field_map or {}
    placed = False
    errors = exc.extra.get("errors")
    if isinstance(errors, dict):
        for key, messages in errors.items():
            name = field_map.get(str(key), str(key))
            if name == NON_FIELD_ERRORS:
                for message in messages if isinstance(messages, list) else [messages]:
                    form.add_error(None, str(message))
                placed = True
            elif name in form.fields:
                for message in messages if isinstance(messages, list) else [messages]:
                    form.add_error(name, str(message))
                placed = True
    if not placed:
        target = field if field in form.fields else None
        form.add_error(target, f"{exc.title}: {exc.detail}")


def submit(
    request: HttpRequest,
    studio: Studio,
    *,
    form: forms.Form,
    effect: Callable[[], str],
    rerender: Callable[[int], HttpResponse],
    field_map: Mapping[str, str] | None = None,
    error_fields: Mapping[type[DomainError], str] | None = None,
) -> HttpResponse:
    """Validate `form`; run `effect` once per rendered form (`submit_once`) and redirect (303) to
    the URL it returns. Invalid input re-renders with 400; a refusal (DomainError, including the
    nonce protocol's own) re-renders with its status. Either way nothing is written."""
    if not form.is_valid():
        return rerender(400)
    try:
        return submit_once(request, tenant_id=studio.tenant_id, caller=studio.caller, effect=effect)
    except DomainError as exc:
        field = next((name for klass, name in (error_fields or {}).items() if isinstance(exc, klass)), None)
        show_refusal(form, exc, field_map=field_map, field=field)
        return rerender(exc.status_code)


def page_of(request: HttpRequest, items: Any, *, per_page: int = PAGE_SIZE, param: str = "page") -> Page:
    """One page of `items` (`?page=`, or `?<param>=` when a page has two lists; clamped to the
    valid range)."""
    return Paginator(items, per_page).get_page(request.GET.get(param))


def sale_amount_text(sale: Checkout) -> str:
    """ "59.00 EUR", or for a sale some of whose items were refunded "59.00 EUR, 9.00 EUR refunded"
    (a sale of `sales_of_tenant`, with its `refunded_minor`); a refunded sale says so by its status."""
    amount = money_text(sale.amount_minor, sale.currency)
    refunded = int(getattr(sale, "refunded_minor", 0) or 0)
    if sale.status != Checkout.Status.PAID or refunded == 0:
        return amount
    return f"{amount}, {money_text(refunded, sale.currency)} refunded"
