"""An event's attendees on the studio dashboard (owners and staff, as the attendees API): who is
registered, their e-mail choices and drop-in face, the signed link to their attendee page (to
send them; it is their credential), a form that registers attendees pasted one per line
(`attendees_register` through `submit_once`), and a "Replace link" button per attendee
(`attendee_link_reset` through `submit_once`: a resubmitted form replaces the link once; the old
link then opens nothing but unsubscribing, and no e-mail is sent: the studio hands the new one on).
"""

from __future__ import annotations

from dataclasses import replace

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from apps.catalog import selectors as catalog
from apps.catalog.errors import EventNotFound
from apps.catalog.models import Event
from apps.notifications.attendee_links import attendee_link_reset
from apps.notifications.services import attendees_register
from apps.web.studio import selectors
from apps.web.studio.access import ANNOUNCE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import AttendeeLinkResetForm, AttendeesForm
from apps.web.studio.views.common import page_of, submit


def _render(request: HttpRequest, studio: Studio, event: Event, form: AttendeesForm, *, status: int) -> HttpResponse:
    page = page_of(request, selectors.attendees_of_event(tenant_id=studio.tenant_id, event_id=event.pk))
    context = {
        "studio": studio,
        "event": event,
        "page": page,
        "rows": selectors.attendee_rows(tenant_id=studio.tenant_id, attendees=page.object_list),
        "form": form,
        "reset_form": AttendeeLinkResetForm(),
        "page_query": f"?page={page.number}" if page.number > 1 else "",
    }
    return render(request, "studio/attendees.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*ANNOUNCE_ROLES)
def event_attendees(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """GET lists the event's attendees; POST registers the pasted ones, once per rendered form."""
    event = _event_or_problem(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
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
        added = ngettext("%(count)d attendee added", "%(count)d attendees added", result.created) % {
            "count": result.created
        }
        messages.success(request, f"{added}, {result.updated} updated.")
        return reverse("studio:event-attendees", kwargs={"event_id": event.pk})

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render(request, studio, event, form, status=status),
    )


def _event_or_problem(request: HttpRequest, studio: Studio, event_id: int) -> Event | HttpResponse:
    try:
        return catalog.event_get(tenant_id=studio.tenant_id, event_id=event_id)
    except EventNotFound:
        return problem_page(
            request, studio, status=404, title="Event not found", message="This studio has no such event."
        )


@require_POST
@studio_page(*ANNOUNCE_ROLES)
def attendee_link_reset_view(request: HttpRequest, studio: Studio, event_id: int, attendee_id: int) -> HttpResponse:
    """Replace one attendee's link (a button per row), once per rendered form; back to the list
    (its page kept). An attendee of another event or studio is a 404 page, writing nothing."""
    event = _event_or_problem(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    form = AttendeeLinkResetForm(request.POST)

    def effect() -> str:
        attendee = attendee_link_reset(
            tenant_id=studio.tenant_id, event_id=event.pk, attendee_id=attendee_id, actor_label=studio.caller
        )
        messages.success(
            request,
            f"The link of {attendee.email} is replaced: their old link no longer opens their page (it can still "
            "unsubscribe). Send them the new one (their row's link); they get no e-mail from us.",
        )
        url = reverse("studio:event-attendees", kwargs={"event_id": event.pk})
        page = request.GET.get("page", "")
        return f"{url}?{urlencode({'page': page})}" if page.isascii() and page.isdigit() else url

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: problem_page(
            request,
            studio,
            status=status,
            title="The link was not replaced",
            message=" ".join(str(e) for e in form.non_field_errors()) or "Reload the attendees page and try again.",
            back=(reverse("studio:event-attendees", kwargs={"event_id": event.pk}), "Back to the attendees"),
        ),
    )
