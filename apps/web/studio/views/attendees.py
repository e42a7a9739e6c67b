"""An event's attendees on the studio dashboard (owners and staff, as the attendees API): who is
registered, their e-mail choices and drop-in face, the signed link to their attendee page (to
send them; it is their credential), and a form that registers attendees pasted one per line
(`attendees_register` through `submit_once`)."""

from __future__ import annotations

from dataclasses import replace

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from apps.catalog import selectors as catalog
from apps.catalog.errors import EventNotFound
from apps.catalog.models import Event
from apps.notifications.services import attendees_register
from apps.web.studio import selectors
from apps.web.studio.access import ANNOUNCE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import AttendeesForm
from apps.web.studio.views.common import page_of, submit


def _render(request: HttpRequest, studio: Studio, event: Event, form: AttendeesForm, *, status: int) -> HttpResponse:
    page = page_of(request, selectors.attendees_of_event(tenant_id=studio.tenant_id, event_id=event.pk))
    context = {
        "studio": studio,
        "event": event,
        "page": page,
        "rows": selectors.attendee_rows(tenant_id=studio.tenant_id, attendees=page.object_list),
        "form": form,
    }
    return render(request, "studio/attendees.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*ANNOUNCE_ROLES)
def event_attendees(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """GET lists the event's attendees; POST registers the pasted ones, once per rendered form."""
    try:
        event = catalog.event_get(tenant_id=studio.tenant_id, event_id=event_id)
    except EventNotFound:
        return problem_page(
            request, studio, status=404, title="Event not found", message="This studio has no such event."
        )
    if request.method != "POST":
        return _render(request, studio, event, AttendeesForm(), status=200)
    form = AttendeesForm(request.POST)

    def effect() -> str:
        result = attendees_register(
            tenant=studio.org,
            event_id=event.pk,
            attendees=[
                replace(attendee, email_consent=form.cleaned_data["email_consent"])
                for attendee in form.cleaned_data["lines"]
            ],
            actor_label=studio.caller,
            keep_consent=True,
        )
        messages.success(request, f"{result.created} attendee(s) added, {result.updated} updated.")
        return reverse("studio:event-attendees", kwargs={"event_id": event.pk})

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render(request, studio, event, form, status=status),
    )
