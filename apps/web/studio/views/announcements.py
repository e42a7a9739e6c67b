"""Announcements to an event's attendees: compose (a draft, or sent at once), send, and follow the
asynchronous fan-out through the status and counts its deliveries report."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.notifications.models import Announcement
from apps.notifications.selectors import announcement_channels, announcement_status
from apps.notifications.services import UnknownEvent, announcement_create, announcement_send
from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.web.studio import selectors
from apps.web.studio.access import ANNOUNCE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import AnnouncementForm, SendForm
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
    request: HttpRequest, studio: Studio, announcement: Announcement, form: SendForm, status: int
) -> HttpResponse:
    context = {
        "studio": studio,
        "announcement": announcement,
        "status": announcement_status(announcement),
        "channels": announcement_channels(announcement),
        "audience": selectors.audience_size(tenant_id=studio.tenant_id, event_id=announcement.event_id),
        "form": form,
        "fanout_enabled": capability_enabled(Capability.FANOUT),
    }
    return render(request, "studio/announcement_detail.html", context, status=status)


def _announcement_or_404(request: HttpRequest, studio: Studio, announcement_id: int) -> Announcement | HttpResponse:
    announcement = selectors.announcements_of_studio(tenant_id=studio.tenant_id).filter(pk=announcement_id).first()
    if announcement is None:
        return problem_page(
            request, studio, status=404, title="Announcement not found", message="This studio has no such announcement."
        )
    return announcement


@require_GET
@studio_page(*ANNOUNCE_ROLES)
def announcement_detail(request: HttpRequest, studio: Studio, announcement_id: int) -> HttpResponse:
    announcement = _announcement_or_404(request, studio, announcement_id)
    if isinstance(announcement, HttpResponse):
        return announcement
    return _render_detail(request, studio, announcement, SendForm(), 200)


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
        rerender=lambda status: _render_detail(request, studio, announcement, form, status),
    )
