"""Drop-in in the Django admin (platform superusers, system context).

Read-only: faces are registered by studios and attendees, jobs and matches written by the
workers. Failed jobs can be queued again (audited, as the studio's own request would be; not a
withdrawn photo's). The face list never shows an embedding or a backend reference.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext

from apps.catalog.errors import PhotoAlreadyWithdrawn
from apps.core.admin_base import ReadOnlyAdmin
from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch
from apps.dropin.services import dropin_job_request


@admin.register(AttendeeFace)
class AttendeeFaceAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "event", "attendee", "status", "backend", "consent_recorded_at", "enrolled_at")
    list_filter = ("status", "backend")
    search_fields = ("=attendee__email",)
    ordering = ("-id",)
    list_select_related = ("tenant", "event", "attendee")
    fields = (*list_display, "rejected_reason", "created_at")
    show_full_result_count = False


@admin.register(DropInJob)
class DropInJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "tenant",
        "event",
        "photo",
        "status",
        "attempts",
        "faces",
        "matches",
        "searches",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    ordering = ("-id",)
    list_select_related = ("tenant", "event", "photo")
    show_full_result_count = False
    actions = ["queue_again"]

    @admin.action(description="Queue failed jobs again", permissions=["superuser"])
    def queue_again(self, request: HttpRequest, queryset: QuerySet[DropInJob]) -> None:
        queued, withdrawn = 0, 0
        for job in queryset.filter(status=DropInJob.Status.FAILED).order_by("pk"):
            try:
                with transaction.atomic():
                    _, again = dropin_job_request(
                        tenant_id=job.tenant_id, photo_id=job.photo_id, actor_label=f"admin:{request.user}"
                    )
            except PhotoAlreadyWithdrawn:
                withdrawn += 1
                continue
            queued += again
        queued_text = ngettext("%(count)d job queued again.", "%(count)d jobs queued again.", queued)
        self.message_user(request, queued_text % {"count": queued}, messages.SUCCESS)
        if withdrawn:
            withdrawn_text = ngettext(
                "%(count)d job left failed: its photo is withdrawn.",
                "%(count)d jobs left failed: their photos are withdrawn.",
                withdrawn,
            )
            self.message_user(request, withdrawn_text % {"count": withdrawn}, messages.WARNING)


@admin.register(FaceMatch)
class FaceMatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "photo", "attendee", "face_key", "similarity", "created_at")
    ordering = ("-id",)
    list_select_related = ("tenant", "photo", "attendee")
    show_full_result_count = False
