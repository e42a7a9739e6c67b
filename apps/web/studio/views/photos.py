"""Withdrawing a photo from the studio dashboard (owners): a confirmation page that says what
withdrawing does, how many buyers bought the photo alone (they keep it) and how many paid orders
of all the event's photos lose it, with the reason to record; the effect is
`apps.catalog.withdrawal.photo_withdraw` through `submit_once`."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from apps.catalog.models import Photo
from apps.catalog.products import Actor
from apps.catalog.withdrawal import photo_withdraw
from apps.commerce.selectors import event_bulk_orders_count, photo_buyers_count
from apps.web.studio import selectors
from apps.web.studio.access import CATALOG_WRITE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import PhotoWithdrawForm
from apps.web.studio.views.common import submit


def _render(
    request: HttpRequest, studio: Studio, photo: Photo, form: PhotoWithdrawForm, *, status: int
) -> HttpResponse:
    [row] = selectors.photo_rows(tenant_id=studio.tenant_id, photos=[photo])
    context = {
        "studio": studio,
        "event": photo.event,
        "photo": row,
        "withdrawn": photo.withdrawn_at is not None,
        "buyers": photo_buyers_count(tenant_id=studio.tenant_id, photo_id=photo.pk),
        "bulk_orders": event_bulk_orders_count(tenant_id=studio.tenant_id, event_id=photo.event_id),
        "form": form,
    }
    return render(request, "studio/photo_withdraw.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*CATALOG_WRITE_ROLES)
def photo_withdraw_view(request: HttpRequest, studio: Studio, event_id: int, photo_id: int) -> HttpResponse:
    """GET asks for the reason and confirmation; POST withdraws once per rendered form. A photo
    withdrawn already re-renders with 409; another studio's or another event's photo is a 404."""
    photo = selectors.photo_of_event(tenant_id=studio.tenant_id, event_id=event_id, photo_id=photo_id)
    if photo is None:
        return problem_page(
            request, studio, status=404, title="Photo not found", message="This event has no such photo."
        )
    if request.method != "POST":
        return _render(request, studio, photo, PhotoWithdrawForm(), status=200)
    form = PhotoWithdrawForm(request.POST)

    def effect() -> str:
        photo_withdraw(
            tenant_id=studio.tenant_id,
            photo_id=photo.pk,
            reason=form.cleaned_data["reason"],
            actor=Actor.member(studio.user),
        )
        messages.success(
            request,
            f"Photo #{photo.pk} withdrawn: the shop no longer shows or sells it; its previews and face index "
            "are being deleted.",
        )
        return reverse("studio:event", kwargs={"event_id": event_id}) + "#photos"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render(request, studio, photo, form, status=status),
    )
