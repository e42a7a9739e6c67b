"""Drop-in API for studios (owner, staff or API key; mounted under /api/v1/).

* `POST /api/v1/events/{event_id}/selfies`: register an attendee's selfie for face matching
  (multipart: `email`, `name`, `consent`, `image`); 202: it is enrolled in the background.
* `GET /api/v1/attendees/{attendee_id}/face`: the face's status (pending, enrolled, rejected).
* `DELETE /api/v1/attendees/{attendee_id}/face`: delete it and its matches (204).
* `POST /api/v1/photos/{photo_id}/dropin`: run drop-in on a photo by hand; deduplicated (202
  when this call queued it, 200 with the existing job otherwise).
* `GET /api/v1/photos/{photo_id}/dropin`: the photo's job and its matches.

The mutating endpoints run under the Idempotency-Key protocol of `TenantApi`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.serializers import StrictSerializer
from apps.dropin.models import AttendeeFace, DropInJob
from apps.dropin.selectors import face_of_attendee, job_of_photo, matches_of_photo
from apps.dropin.services import FaceNotFound, PhotoNotFound, dropin_job_request, face_delete, selfie_register
from apps.tenancy.apis import TenantApi
from apps.tenancy.permissions import HasTenantRole

MANAGE_ROLES = HasTenantRole.of("owner", "staff", "api_key")


class FaceOutputSerializer(serializers.Serializer):
    attendee_id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=AttendeeFace.Status.values)
    rejected_reason = serializers.CharField()
    consent_recorded_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    enrolled_at = serializers.DateTimeField(allow_null=True)


class MatchOutputSerializer(serializers.Serializer):
    attendee_id = serializers.IntegerField()
    face_key = serializers.CharField()
    similarity = serializers.FloatField()


class JobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    photo_id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DropInJob.Status.values)
    attempts = serializers.IntegerField()
    faces = serializers.IntegerField()
    matches = serializers.IntegerField()
    searches = serializers.IntegerField()
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class EventSelfiesApi(TenantApi):
    """Register an attendee's selfie for drop-in (the attendee is added to the event by e-mail
    if new). `consent` must be true: it records the attendee's consent to face matching. A new
    selfie replaces the attendee's previous one. `photo_alerts` true records that the attendee
    asked to be e-mailed when new photos of them appear."""

    permission_classes = [MANAGE_ROLES]
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="SelfieRegisterInput")
    class InputSerializer(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        consent = serializers.BooleanField()
        image = serializers.FileField(allow_empty_file=False)
        photo_alerts = serializers.BooleanField(
            required=False, default=False, help_text="The attendee asks to be e-mailed about new photos of them."
        )

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses={202: FaceOutputSerializer})
    def post(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = data.validated_data["image"]
        face = selfie_register(
            tenant_id=self.tenant.pk,
            event_id=event_id,
            email=data.validated_data["email"],
            name=data.validated_data["name"],
            consent=data.validated_data["consent"],
            image=image,
            image_size=image.size,
            actor_label=self.idempotency_caller(request),
            photo_alerts=data.validated_data["photo_alerts"],
        )
        return Response(FaceOutputSerializer(face).data, status=202)


class AttendeeFaceApi(TenantApi):
    """An attendee's registered face: its status, or delete it (with its matches)."""

    permission_classes = [MANAGE_ROLES]

    @extend_schema(responses=FaceOutputSerializer)
    def get(self, request: Request, attendee_id: int) -> Response:
        face = face_of_attendee(tenant_id=self.tenant.pk, attendee_id=attendee_id)
        if face is None:
            raise FaceNotFound(f"Attendee {attendee_id} has no registered face.")
        return Response(FaceOutputSerializer(face).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, attendee_id: int) -> Response:
        face_delete(tenant_id=self.tenant.pk, attendee_id=attendee_id, actor_label=self.idempotency_caller(request))
        return Response(status=204)


def job_out(job: DropInJob, *, tenant_id: int) -> dict[str, Any]:
    data = dict(JobOutputSerializer(job).data)
    data["face_matches"] = MatchOutputSerializer(
        matches_of_photo(tenant_id=tenant_id, photo_id=job.photo_id), many=True
    ).data
    return data


class PhotoDropInApi(TenantApi):
    """A photo's drop-in job: read it, or ask for it (deduplicated: a photo has one job; asking
    again returns it, or queues it again if it failed for good)."""

    permission_classes = [MANAGE_ROLES]

    class OutputSerializer(JobOutputSerializer):
        face_matches = MatchOutputSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, photo_id: int) -> Response:
        job = job_of_photo(tenant_id=self.tenant.pk, photo_id=photo_id)
        if job is None:
            raise PhotoNotFound(f"Photo {photo_id} has no drop-in job (or does not exist in this studio).")
        return Response(job_out(job, tenant_id=self.tenant.pk))

    @extend_schema(request=None, responses={200: OutputSerializer, 202: OutputSerializer})
    def post(self, request: Request, photo_id: int) -> Response:
        job, queued = dropin_job_request(
            tenant_id=self.tenant.pk, photo_id=photo_id, actor_label=self.idempotency_caller(request)
        )
        return Response(job_out(job, tenant_id=self.tenant.pk), status=202 if queued else 200)
