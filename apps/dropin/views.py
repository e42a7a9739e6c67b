"""The attendee's drop-in page (no account: the signed link of their notifications is the
credential, as for `apps.notifications.views`; only the current generation of the link opens it,
a replaced one is a 404 like a tampered one, `apps.notifications.pages.attendee_or_problem`).

* `GET /attendee/<token>/drop-in`: their registered face's status, a form to register a selfie
  (with the consent checkbox) and a button to delete it. With drop-in switched off
  (DROPIN_ENABLED) the page says so and offers no selfie form; a face can still be deleted.
* `POST /attendee/<token>/drop-in`: register the selfie (multipart `image`, `consent`); it is
  enrolled in the background. Errors re-render the form with the reason (400), writing nothing;
  with drop-in switched off, 503 (`DropInUnavailable`) before the upload is read or counted.
  Each selfie costs an enrolment, so a link may send `DROPIN_SELFIE_PAGE_RATE` of them (10 an
  hour); over that, 429 with `Retry-After`, checked before the upload is even parsed.
* `POST /attendee/<token>/drop-in/delete`: delete the face and its matches.
* `POST /attendee/<token>/drop-in/alerts`: `alerts=on` or `off`, the attendee's e-mail alerts of
  new photos of them (`apps.notifications.photo_alerts`), the page's one place to turn them on
  or off (the selfie form does not ask).

All three also count against the client address's `ATTENDEE_PAGE_RATE`, shared with the other
attendee pages (`apps.notifications.pages`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.problems import DomainError, domain_error_page
from apps.dropin.selectors import face_of_attendee
from apps.dropin.services import ConsentRequired, DropInUnavailable, FaceNotFound, face_delete, selfie_register
from apps.notifications.models import Attendee
from apps.notifications.pages import attendee_or_problem, attendee_page_limited
from apps.notifications.photo_alerts import attendee_photo_alerts_set
from apps.notifications.selectors import LINK_INVALID_DETAIL, AttendeeLinkInvalid, attendee_link_still_current
from apps.ops.ratelimit import setting_rate_wait
from apps.tenancy.context import tenant_context


def _actor(attendee: Attendee) -> str:
    return f"attendee {attendee.pk} (signed link)"


def _interval_text(seconds: float) -> str:
    """'an hour', 'every 2 hours', 'every 30 minutes': how often alerts may come, for the page."""
    if seconds >= 3600:
        hours = seconds / 3600
        return "an hour" if hours == 1 else f"every {hours:g} hours"
    return f"every {max(1, round(seconds / 60))} minutes"


def _page(request: HttpRequest, attendee: Attendee, token: str, *, error: str = "", status: int = 200) -> HttpResponse:
    with tenant_context(attendee.tenant_id):
        face = face_of_attendee(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
    response = render(
        request,
        "attendee/dropin.html",
        {
            "attendee": attendee,
            "face": face,
            "token": token,
            "error": error,
            "alert_interval": _interval_text(settings.DROPIN_ALERT_MIN_INTERVAL_SECONDS),
            "dropin_enabled": settings.DROPIN_ENABLED,
        },
        status=status,
    )
    response["Cache-Control"] = "private, no-store"
    return response


CONSENT_NEEDED = "Tick the box to agree to face matching: without your consent, no photo is matched to your face."


def _link_still_current(attendee: Attendee) -> None:
    """In the write's transaction: refuse (AttendeeLinkInvalid, the replaced link's 404) when the
    link was replaced after the request was admitted, e.g. during a selfie's upload."""
    if not attendee_link_still_current(attendee=attendee):
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)


def _selfie_wait(attendee: Attendee) -> int:
    """Count one selfie against the attendee's link: 0 if admitted, else seconds to wait."""
    return setting_rate_wait((f"attendee:dropin:t{attendee.tenant_id}:a{attendee.pk}", "DROPIN_SELFIE_PAGE_RATE"))


@csrf_exempt
@require_http_methods(["GET", "POST"])
@attendee_page_limited
def dropin_page(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    if request.method == "GET":
        return _page(request, attendee, token)
    if not settings.DROPIN_ENABLED:
        # The service refuses too (DropInUnavailable); the page says it, without a selfie form.
        return _page(request, attendee, token, status=DropInUnavailable.status_code)
    wait = _selfie_wait(attendee)
    if wait:
        response = _page(
            request,
            attendee,
            token,
            error=f"Too many selfies sent from this link. Try again in {wait} seconds.",
            status=429,
        )
        response["Retry-After"] = str(wait)
        return response
    image = request.FILES.get("image")
    if image is None:
        return _page(request, attendee, token, error="Choose a photo of your face.", status=400)
    if request.POST.get("consent") != "yes":
        # The service refuses too (ConsentRequired); this says it to the attendee, in their words.
        return _page(request, attendee, token, error=CONSENT_NEEDED, status=ConsentRequired.status_code)
    try:
        with tenant_context(attendee.tenant_id), transaction.atomic(durable=True):
            _link_still_current(attendee)
            selfie_register(
                tenant_id=attendee.tenant_id,
                event_id=attendee.event_id,
                email=attendee.email,
                consent=request.POST.get("consent") == "yes",
                image=image,
                image_size=image.size or 0,
                actor_label=_actor(attendee),
            )
    except AttendeeLinkInvalid as exc:
        return domain_error_page(request, exc)  # replaced mid-request: the 404 of any invalid link
    except DomainError as exc:
        return _page(request, attendee, token, error=exc.detail or exc.title, status=exc.status_code)
    return HttpResponseRedirect(reverse("attendee-dropin", kwargs={"token": token}), status=303)


@csrf_exempt
@require_POST
@attendee_page_limited
def dropin_delete(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    try:
        with tenant_context(attendee.tenant_id), transaction.atomic(durable=True):
            _link_still_current(attendee)
            face_delete(
                tenant_id=attendee.tenant_id,
                attendee_id=attendee.pk,
                actor_label=_actor(attendee),
            )
    except FaceNotFound:
        pass  # already deleted: the page shows that
    except AttendeeLinkInvalid as exc:
        return domain_error_page(request, exc)  # replaced mid-request: the 404 of any invalid link
    return HttpResponseRedirect(reverse("attendee-dropin", kwargs={"token": token}), status=303)


@csrf_exempt
@require_POST
@attendee_page_limited
def dropin_alerts(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    choice = request.POST.get("alerts")
    if choice not in ("on", "off"):
        return _page(request, attendee, token, error="Choose whether to get e-mail alerts.", status=400)
    try:
        with tenant_context(attendee.tenant_id), transaction.atomic(durable=True):
            _link_still_current(attendee)
            attendee_photo_alerts_set(
                tenant_id=attendee.tenant_id,
                attendee_id=attendee.pk,
                enabled=choice == "on",
                actor_label=_actor(attendee),
            )
    except AttendeeLinkInvalid as exc:
        return domain_error_page(request, exc)  # replaced mid-request: the 404 of any invalid link
    return HttpResponseRedirect(reverse("attendee-dropin", kwargs={"token": token}), status=303)
