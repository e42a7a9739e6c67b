""" "Find me": a shopper searches an event's photos with one selfie.

* `GET /s/<studio>/<event>/find-me`: the upload form (the selfie is used for this one search and
  not stored).
* `POST` (multipart `image`): `photos_find_by_selfie`, then the matching photos as a gallery
  linking to their pages (200). Refusals re-render the form: no file 400, a file over the limit
  413 (refused from its declared length before the body is read, when it declares one: the
  view is exempt from CsrfViewMiddleware, which would parse and spool the whole body, and checks
  the CSRF token itself once the size is known to be acceptable), a selfie of more pixels than
  the drop-in selfie limit 422 before anything decodes it, a selfie the face backend rejects
  422 with what to do instead, the face backend or the search unavailable 503 with Retry-After,
  too many searches 429 with Retry-After (limited per session and per client address,
  `apps.web.shop.limits`). A protected event whose code the session has not entered gets the
  code form (403), never a search.

The budget pays for face searches (a provider's bill, or dlib's CPU), so only an upload that
reaches `photos_find_by_selfie` spends it, counted just before the call; a shopper who picks the
wrong file is told so without losing a search. What is refused before is free because it is
cheap: the declared length (nothing read), then the multipart parse every POST gets (bounded by
SHOP_FINDME_MAX_BYTES plus the envelope), the size, and `probe_image`, which reads the header for
the format and pixel count and walks the file's structure without decoding a pixel (linear in
the bounded size, like the parse). Decoding happens only in the face backend, after the count, so
no refusal makes the server decode an image for free. The budget is also looked at, without
counting, before the upload is read (and before the CSRF check parses it): a shopper who spent it
gets the wait page at once.

The selfie's bytes live only in this request: read from the upload, handed to the search,
dropped with the request (Django deletes an upload's temporary file when the request ends).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from apps.catalog import images
from apps.catalog.selectors import PublicPhoto
from apps.dropin.faces.base import FaceBackendUnavailable, FaceRejected, NoFaceFound, SeveralFaces, UnreadableImage
from apps.dropin.findme import FindMeUnavailable, photos_find_by_selfie
from apps.dropin.services import SELFIE_FORMATS, SELFIE_MAX_PIXELS
from apps.web.shop.limits import findme_wait
from apps.web.shop.selectors import ShopEvent, Studio, event_photos_by_ids, shop_event
from apps.web.shop.views.common import is_locked, locked_page, render_page, shop_view
from apps.web.submit_once import session_caller

RESULT_LIMIT = 200
# Multipart framing around the file (boundaries, part headers, the CSRF field).
_ENVELOPE_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 30

_REJECTIONS: list[tuple[type[FaceRejected], str]] = [
    (NoFaceFound, "We could not find a face in that photo. Use a clear, well-lit selfie looking at the camera."),
    (SeveralFaces, "That photo shows more than one face. Use a selfie with only you in it."),
    (UnreadableImage, "We could not read that file as a photo. Upload a JPEG, PNG or WebP image."),
]


_PROBE_REFUSED = (
    "We could not read that file as a photo. Upload a JPEG, PNG or WebP image of at most "
    f"{SELFIE_MAX_PIXELS // 1_000_000} megapixels; a selfie straight from your phone's camera is fine."
)


def max_selfie_bytes() -> int:
    return int(settings.SHOP_FINDME_MAX_BYTES)


def _rejection_text(exc: FaceRejected) -> str:
    for kind, text in _REJECTIONS:
        if isinstance(exc, kind):
            return text
    return "That photo cannot be used for a search. Try another selfie."


def _page(
    request: HttpRequest,
    studio: Studio,
    event: ShopEvent,
    *,
    results: list[PublicPhoto] | None = None,
    error: str = "",
    status: int = 200,
    retry_after: int | None = None,
) -> HttpResponse:
    response = render_page(
        request,
        "shop/findme.html",
        studio=studio,
        context={
            "event": event,
            "results": results,
            "searched": results is not None,
            "error": error,
            "max_size": filesizeformat(max_selfie_bytes()),
        },
        status=status,
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


# Exempt from the middleware's CSRF check, which reads request.POST and so parses (and spools to
# disk) the whole multipart body before the view could refuse it by size; `_search` checks the
# token itself (csrf_protect) after the declared size has been accepted.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@shop_view
def find_me(request: HttpRequest, studio: Studio, event_slug: str) -> HttpResponse:
    event = shop_event(tenant_id=studio.id, event_slug=event_slug)
    if is_locked(request, event):
        return locked_page(request, studio, event, status=403, next_url=request.path)
    if request.method == "GET":
        return _page(request, studio, event)
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > max_selfie_bytes() + _ENVELOPE_BYTES:
        return _page(request, studio, event, error=_too_large(), status=413)
    # Looked at, not counted, before anything reads the body; a session-less request has no
    # session budget to have spent (and gets no session before its CSRF token is checked).
    session_key = session_caller(request) if request.session.session_key else ""
    wait = findme_wait(request, tenant_id=studio.id, event_id=event.id, session_key=session_key, count=False)
    if wait:
        return _too_many(request, studio, event, wait)
    return _search(request, studio, event)


def _too_large() -> str:
    limit = filesizeformat(max_selfie_bytes())
    return f"That file is too large; the limit is {limit}. A phone selfie is usually far smaller."


def _too_many(request: HttpRequest, studio: Studio, event: ShopEvent, wait: int) -> HttpResponse:
    return _page(
        request,
        studio,
        event,
        error=f"Too many searches. Please wait {wait} seconds before trying again.",
        status=429,
        retry_after=wait,
    )


@csrf_protect
def _search(request: HttpRequest, studio: Studio, event: ShopEvent) -> HttpResponse:
    upload = request.FILES.get("image")
    if upload is None:
        return _page(request, studio, event, error="Choose a selfie to search with.", status=400)
    if (upload.size or 0) > max_selfie_bytes():
        return _page(request, studio, event, error=_too_large(), status=413)
    try:
        # Header only: a small file may claim enough pixels to take gigabytes once decoded.
        images.probe_image(upload, allowed_formats=SELFIE_FORMATS, max_pixels=SELFIE_MAX_PIXELS)
    except images.ImageRejected:
        return _page(request, studio, event, error=_PROBE_REFUSED, status=422)
    wait = findme_wait(request, tenant_id=studio.id, event_id=event.id, session_key=session_caller(request))
    if wait:
        return _too_many(request, studio, event, wait)
    try:
        hits = photos_find_by_selfie(tenant_id=studio.id, event_id=event.id, image=upload.read(), limit=RESULT_LIMIT)
    except FaceRejected as exc:
        return _page(request, studio, event, error=_rejection_text(exc), status=422)
    except (FaceBackendUnavailable, FindMeUnavailable):
        return _page(
            request,
            studio,
            event,
            error="Face search is not available right now. Please try again shortly.",
            status=503,
            retry_after=RETRY_AFTER_SECONDS,
        )
    photos = event_photos_by_ids(tenant_id=studio.id, event_id=event.id, photo_ids=[hit.photo_id for hit in hits])
    return _page(request, studio, event, results=photos)
