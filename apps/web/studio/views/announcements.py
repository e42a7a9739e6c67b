"""Announcements to an event's attendees: compose (a draft, or sent at once), change or delete a
draft, send, and follow the asynchronous fan-out through the status and counts its deliveries
report."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.notifications.models import Announcement
from apps.notifications.selectors import announcement_channels, announcement_status
from apps.notifications.services import (
    UnknownEvent,
    announcement_create,
    announcement_delete,
    announcement_send,
    announcement_update,
)
from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.web.studio import selectors
from apps.web.studio.access import ANNOUNCE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import AnnouncementEditForm, AnnouncementForm, DraftDeleteForm, SendForm
from apps.web.studio.views.common import page_of, submit


def _render_list(request: HttpRequest, studio: Studio, form: AnnouncementForm, status: int) -> HttpResponse:
    page = page_of(request, selectors.announcements_of_studio(tenant_id=studio.tenant_id))
    context = {
        "studio": studio,
        "page": page,
        "rows": selectors.announcement_rows(page.object_list),
        "form": form,
        "fanout_enabled": capability_enabled(Capability.FANOUT),
    }
    return render(request, "studio/announcements.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*ANNOUNCE_ROLES)
def announcements(request: HttpRequest, studio: Studio) -> HttpResponse:
    events = selectors.event_choices(tenant_id=studio.tenant_id)
    if request.method != "POST":
        return _render_list(request, studio, AnnouncementForm(events=events), 200)
    form = AnnouncementForm(request.POST, events=events)

    def effect() -> str:
        data = form.cleaned_data
        announcement = announcement_create(
            tenant=studio.org,
            event_id=data["event"],
            title=data["title"],
            body=data["body"],
            actor=studio.user,
            actor_label=studio.caller,
        )
        if data["send_now"]:
            announcement_send(tenant_id=studio.tenant_id, announcement_id=announcement.pk, actor_label=studio.caller)
            messages.success(request, "Announcement sent: its deliveries are being written; follow them here.")
        else:
            messages.success(request, "Draft saved. Send it when it is ready.")
        return reverse("studio:announcement", args=[announcement.pk])

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_list(request, studio, form, status),
        error_fields={UnknownEvent: "event"},
    )


def _render_detail(
    request: HttpRequest,
    studio: Studio,
    announcement: Announcement,
    status: int = 200,
    *,
    send_form: SendForm | None = None,
    edit_form: AnnouncementEditForm | None = None,
    delete_form: DraftDeleteForm | None = None,
) -> HttpResponse:
    """The announcement's page; a draft's page offers Send, Edit and Delete (a refused form is
    shown again with its errors). Once it is sent none of them is offered, so the refusal of a
    form sent from an older page (an edit or delete of what went out meanwhile) is shown on its
    own."""
    draft = announcement.send_requested_at is None
    refused = next((form for form in (edit_form, delete_form) if form is not None and form.errors), None)
    if edit_form is None and draft:
        edit_form = AnnouncementEditForm.for_announcement(
            announcement, events=selectors.event_choices(tenant_id=studio.tenant_id)
        )
    context = {
        "studio": studio,
        "announcement": announcement,
        "status": announcement_status(announcement),
        "channels": announcement_channels(announcement),
        "audience": selectors.audience_size(tenant_id=studio.tenant_id, event_id=announcement.event_id),
        "form": send_form or SendForm(),
        "edit_form": edit_form,
        "delete_form": delete_form or DraftDeleteForm(),
        "refusal": refused.non_field_errors() if refused is not None and not draft else None,
        "fanout_enabled": capability_enabled(Capability.FANOUT),
    }
    return render(request, "studio/announcement_detail.html", context, status=status)


def _announcement_or_404(
    request: HttpRequest,
    studio: Studio,
    announcement_id: int,
    message: str = "This studio has no such announcement.",
) -> Announcement | HttpResponse:
    announcement = selectors.announcements_of_studio(tenant_id=studio.tenant_id).filter(pk=announcement_id).first()
    if announcement is None:
        return problem_page(request, studio, status=404, title="Announcement not found", message=message)
    return announcement


def _render_refused(
    request: HttpRequest, studio: Studio, announcement_id: int, status: int, **refused_forms: Any
) -> HttpResponse:
    """The page after a refused edit or delete, read again: the announcement as it is now (sent
    meanwhile: the refusal on its own), or a 404 page if it is gone (deleted, in another tab or by
    someone else; or never this studio's)."""
    gone = "There is no such announcement in this studio (a deleted draft is gone for good). Nothing was changed."
    announcement = _announcement_or_404(request, studio, announcement_id, gone)
    if isinstance(announcement, HttpResponse):
        return announcement
    return _render_detail(request, studio, announcement, status, **refused_forms)


@require_GET
@studio_page(*ANNOUNCE_ROLES)
def announcement_detail(request: HttpRequest, studio: Studio, announcement_id: int) -> HttpResponse:
    announcement = _announcement_or_404(request, studio, announcement_id)
    if isinstance(announcement, HttpResponse):
        return announcement
    return _render_detail(request, studio, announcement)


@require_POST
@studio_page(*ANNOUNCE_ROLES)
def announcement_edit(request: HttpRequest, studio: Studio, announcement_id: int) -> HttpResponse:
    """Change a draft's event, title or body, once per rendered form: only the fields changed on
    the page (`AnnouncementEditForm.changed_fields`). Refused (409, nothing written) once it was
    sent, also when the send commits while this waits for it (`announcement_update` locks the
    row)."""
    found = _announcement_or_404(request, studio, announcement_id)
    if isinstance(found, HttpResponse):
        return found
    form = AnnouncementEditForm(request.POST, events=selectors.event_choices(tenant_id=studio.tenant_id))

    def effect() -> str:
        changed = form.changed_fields()
        page = reverse("studio:announcement", args=[announcement_id])
        if all(value is None for value in changed.values()):
            messages.info(request, "Nothing was changed.")
            return page
        announcement_update(
            tenant_id=studio.tenant_id, announcement_id=announcement_id, actor_label=studio.caller, **changed
        )
        messages.success(request, "Draft saved. Send it when it is ready.")
        return page

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_refused(request, studio, announcement_id, status, edit_form=form),
        error_fields={UnknownEvent: "event"},
    )


@require_POST
@studio_page(*ANNOUNCE_ROLES)
def announcement_delete_view(request: HttpRequest, studio: Studio, announcement_id: int) -> HttpResponse:
    """Delete a draft, once per rendered form. Refused (409, nothing written) once it was sent,
    also when the send commits while this waits for it (`announcement_delete` locks the row). The
    draft is looked up by the service only, so a second click of the same form (the draft gone)
    lands on the list as the first did; a new form of a deleted draft is a 404 page."""
    form = DraftDeleteForm(request.POST)

    def effect() -> str:
        announcement_delete(tenant_id=studio.tenant_id, announcement_id=announcement_id, actor_label=studio.caller)
        messages.success(request, "Draft deleted.")
        return reverse("studio:announcements")

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_refused(request, studio, announcement_id, status, delete_form=form),
    )


@require_POST
@studio_page(*ANNOUNCE_ROLES)
def announcement_send_view(request: HttpRequest, studio: Studio, announcement_id: int) -> HttpResponse:
    announcement = _announcement_or_404(request, studio, announcement_id)
    if isinstance(announcement, HttpResponse):
        return announcement
    form = SendForm(request.POST)

    def effect() -> str:
        # The service sends once: a send asked for before this transaction (from another tab, or
        # the API) is returned unchanged, stamped earlier than `asked`.
        asked = timezone.now()
        sent = announcement_send(tenant_id=studio.tenant_id, announcement_id=announcement.pk, actor_label=studio.caller)
        if sent.send_requested_at is not None and sent.send_requested_at < asked:
            when = dateformat.format(timezone.localtime(sent.send_requested_at), "j M Y, H:i")
            messages.info(request, f"This announcement was sent already, on {when}; nothing more is sent.")
        else:
            messages.success(request, "Announcement sent: its deliveries are being written; follow them here.")
        return reverse("studio:announcement", args=[announcement.pk])

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_detail(request, studio, announcement, status, send_form=form),
    )
