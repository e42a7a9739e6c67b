"""Attendees and announcements API for studios (owner, staff or API key).

* `POST /api/v1/events/{event_id}/attendees`: register or update up to 1,000 attendees by
  e-mail, with the e-mail consent the studio recorded.
* `GET /api/v1/events/{event_id}/attendees`: the event's attendees.
* `POST /api/v1/events/{event_id}/attendees/{attendee_id}/reset-link`: replace the attendee's
  signed link (the old one then opens nothing but unsubscribing); answers the attendee as the
  list shows it, with the new links. No e-mail: the studio hands the new link on.
* `POST /api/v1/announcements`: a draft announcement to an event's attendees.
* `PATCH /api/v1/announcements/{id}`: change a draft's event, title or body;
  `DELETE /api/v1/announcements/{id}`: delete a draft (204). Once it is sent, both are a 409.
* `POST /api/v1/announcements/{id}/send`: send it (202; a second call changes nothing).
* `GET /api/v1/announcements`, `GET /api/v1/announcements/{id}`: with the status derived from
  the deliveries and their counts.

The mutating endpoints run under the Idempotency-Key protocol of `TenantApi`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.catalog.errors import EventNotFound
from apps.catalog.models import Event
from apps.core.openapi import PAGINATION_PARAMETERS, PAGINATION_QUERY, page_of
from apps.core.pagination import StrictLimitOffsetPagination
from apps.core.serializers import IdField, StrictSerializer
from apps.notifications.attendee_links import attendee_link_reset
from apps.notifications.models import Announcement
from apps.notifications.selectors import (
    announcement_status,
    announcements_of_tenant,
    attendee_link,
    attendees_of_event,
)
from apps.notifications.services import (
    ANNOUNCEMENT_BODY_MAX_LENGTH,
    MAX_ATTENDEES_PER_REGISTRATION,
    AnnouncementNotFound,
    AttendeeIn,
    announcement_create,
    announcement_delete,
    announcement_send,
    announcement_update,
    attendees_register,
)
from apps.tenancy.apis import TenantApi
from apps.tenancy.models import User
from apps.tenancy.permissions import HasTenantRole

MANAGE_ROLES = HasTenantRole.of("owner", "staff", "api_key")


class AttendeeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField()
    name = serializers.CharField(allow_blank=True)
    email_consent = serializers.BooleanField()
    consent_recorded_at = serializers.DateTimeField(allow_null=True)
    unsubscribed_at = serializers.DateTimeField(allow_null=True)
    photo_alerts_at = serializers.DateTimeField(
        allow_null=True, help_text="When they asked to be e-mailed about new photos of them; null: they did not."
    )
    created_at = serializers.DateTimeField()
    inbox_url = serializers.SerializerMethodField(
        help_text="The attendee's own page (notifications, drop-in selfie, unsubscribe): a signed link to"
        " hand to them; it is their only credential, so send it to their e-mail address only."
    )
    dropin_url = serializers.SerializerMethodField(help_text="Their drop-in page (register a selfie), signed.")

    def get_inbox_url(self, attendee: Any) -> str:
        return attendee_link(tenant_id=attendee.tenant_id, attendee_id=attendee.pk, generation=attendee.link_generation)

    def get_dropin_url(self, attendee: Any) -> str:
        return attendee_link(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, generation=attendee.link_generation, page="dropin"
        )


class AnnouncementOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    status = serializers.ChoiceField(choices=["draft", "sending", "sent", "partially_failed", "failed"])
    recipients = serializers.IntegerField()
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    send_requested_at = serializers.DateTimeField(allow_null=True)
    fanout_completed_at = serializers.DateTimeField(allow_null=True)


def announcement_out(announcement: Announcement) -> dict[str, Any]:
    status = announcement_status(announcement)
    return AnnouncementOutputSerializer(
        {
            "id": announcement.pk,
            "event_id": announcement.event_id,
            "title": announcement.title,
            "body": announcement.body,
            "status": status.status,
            "recipients": status.recipients,
            "delivered": status.delivered,
            "failed": status.failed,
            "pending": status.pending,
            "created_at": announcement.created_at,
            "send_requested_at": announcement.send_requested_at,
            "fanout_completed_at": announcement.fanout_completed_at,
        }
    ).data


class AttendeeInSerializer(StrictSerializer):
    """One attendee to register; a field it does not declare is refused."""

    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    email_consent = serializers.BooleanField(
        required=False,
        help_text="True records the attendee's consent to announcements by e-mail now; false withdraws it; "
        "omitted keeps a known attendee's recorded consent (a new attendee has none).",
    )


class EventAttendeesApi(TenantApi):
    """An event's attendees: list them, or register up to 1,000 at once (new ones are added,
    known ones updated; an attendee who unsubscribed stays unsubscribed)."""

    query_parameters = PAGINATION_QUERY

    permission_classes = [MANAGE_ROLES]

    class InputSerializer(StrictSerializer):
        # The child serializer validates each attendee and is what the OpenAPI schema shows.
        attendees = serializers.ListField(
            child=AttendeeInSerializer(), min_length=1, max_length=MAX_ATTENDEES_PER_REGISTRATION
        )

        def validate_attendees(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
            emails = [row["email"].strip().lower() for row in value]
            if len(set(emails)) != len(emails):
                raise serializers.ValidationError("Each e-mail may appear once per request.")
            return value

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        updated = serializers.IntegerField()

    @extend_schema(
        operation_id="v1_events_attendees_list",
        parameters=PAGINATION_PARAMETERS,
        responses=page_of(AttendeeSerializer),
    )
    def get(self, request: Request, event_id: int) -> Response:
        if not Event.objects.filter(pk=event_id).exists():
            raise EventNotFound(f"Event {event_id} does not exist in this studio.")
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(attendees_of_event(event_id=event_id), request, view=self)
        return paginator.get_paginated_response(AttendeeSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer},
        description=(
            "Register attendees; `email_consent` records that the attendee agreed to announcements by e-mail "
            "(false withdraws it; omitted keeps what is recorded)."
        ),
    )
    def post(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = attendees_register(
            tenant=self.tenant,
            event_id=event_id,
            attendees=[AttendeeIn(**row) for row in data.validated_data["attendees"]],
            actor_label=self.idempotency_caller(request),
        )
        return Response(self.OutputSerializer(result).data)


class AttendeeLinkResetApi(TenantApi):
    """Replace an attendee's signed link (someone else got hold of it): their `inbox_url` and
    `dropin_url` change, and every earlier link of theirs stops opening their pages (an old
    e-mail's unsubscribe link still unsubscribes). Audited; no e-mail is sent."""

    permission_classes = [MANAGE_ROLES]

    @extend_schema(request=None, responses={200: AttendeeSerializer})
    def post(self, request: Request, event_id: int, attendee_id: int) -> Response:
        attendee = attendee_link_reset(
            tenant_id=self.tenant.pk,
            event_id=event_id,
            attendee_id=attendee_id,
            actor_label=self.idempotency_caller(request),
        )
        return Response(AttendeeSerializer(attendee).data)


class AnnouncementsApi(TenantApi):
    """The studio's announcements (newest first), or a new draft to an event's attendees."""

    query_parameters = PAGINATION_QUERY

    permission_classes = [MANAGE_ROLES]

    class InputSerializer(StrictSerializer):
        event_id = IdField()
        title = serializers.CharField(max_length=200)
        body = serializers.CharField(max_length=ANNOUNCEMENT_BODY_MAX_LENGTH)

    @extend_schema(
        operation_id="v1_announcements_list",
        parameters=PAGINATION_PARAMETERS,
        responses=page_of(AnnouncementOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(announcements_of_tenant(), request, view=self)
        return paginator.get_paginated_response([announcement_out(row) for row in page or []])

    @extend_schema(request=InputSerializer, responses={201: AnnouncementOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user if isinstance(request.user, User) else None
        announcement = announcement_create(
            tenant=self.tenant,
            actor=user,
            actor_label=self.idempotency_caller(request),
            **data.validated_data,
        )
        return Response(announcement_out(announcement), status=201)


class AnnouncementDetailApi(TenantApi):
    """GET: one announcement, with its status and delivery counts. PATCH: change a draft's
    event, title or body (every field optional, at least one). DELETE: delete a draft. An
    announcement that is sending or sent cannot be changed or deleted (409, nothing written),
    also when its send commits while the change waits for it."""

    permission_classes = [MANAGE_ROLES]

    @extend_schema_serializer(component_name="AnnouncementUpdateInput")
    class InputSerializer(StrictSerializer):
        event_id = IdField(required=False)
        title = serializers.CharField(max_length=200, required=False)
        body = serializers.CharField(max_length=ANNOUNCEMENT_BODY_MAX_LENGTH, required=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not attrs:
                raise serializers.ValidationError("Give at least one of event_id, title, body.")
            return attrs

    @extend_schema(responses=AnnouncementOutputSerializer)
    def get(self, request: Request, announcement_id: int) -> Response:
        announcement = announcements_of_tenant().filter(pk=announcement_id).first()
        if announcement is None:
            raise AnnouncementNotFound(f"Announcement {announcement_id} does not exist in this studio.")
        return Response(announcement_out(announcement))

    @extend_schema(
        request=InputSerializer,
        responses=AnnouncementOutputSerializer,
        description=(
            "Change a draft: the fields given replace its own. 409 once it is sending or sent; 400 for an "
            "event the studio does not have."
        ),
    )
    def patch(self, request: Request, announcement_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        announcement = announcement_update(
            tenant_id=self.tenant.pk,
            announcement_id=announcement_id,
            actor_label=self.idempotency_caller(request),
            **data.validated_data,
        )
        return Response(announcement_out(announcement))

    @extend_schema(
        request=None,
        responses={204: None},
        description="Delete a draft (audited). 409 once it is sending or sent.",
    )
    def delete(self, request: Request, announcement_id: int) -> Response:
        announcement_delete(
            tenant_id=self.tenant.pk, announcement_id=announcement_id, actor_label=self.idempotency_caller(request)
        )
        return Response(status=204)


class AnnouncementSendApi(TenantApi):
    """Send an announcement to its event's subscribed attendees (202: the fan-out runs in the
    background; follow it on the announcement). Sending twice sends once."""

    permission_classes = [MANAGE_ROLES]

    @extend_schema(request=None, responses={202: AnnouncementOutputSerializer})
    def post(self, request: Request, announcement_id: int) -> Response:
        announcement = announcement_send(
            tenant_id=self.tenant.pk, announcement_id=announcement_id, actor_label=self.idempotency_caller(request)
        )
        return Response(announcement_out(announcement), status=202)
