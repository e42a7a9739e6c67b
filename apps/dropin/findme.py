"""Find me: a shopper's selfie → the photos of an event they appear in, old photos included.

Every photo's faces are indexed when its drop-in job runs (or by `manage.py dropin_index_photos`
for photos processed before): `PhotoIndex` / `PhotoFace`, see apps/dropin/services.py. A search
hands the selfie to the configured face backend's `search_selfie()` together with the event's
indexed faces of photos whose derivatives are ready (at most FINDME_MAX_FACES, read
FINDME_BATCH_SIZE at a time), at the drop-in match threshold (DROPIN_MATCH_THRESHOLD, or the
backend's own). It writes nothing.

Privacy: the selfie is processed in memory only. It is never stored, never logged (nor its
size or digest), and goes nowhere but the configured backend (Rekognition: DetectFaces and
SearchFacesByImage; local: dlib in this process). Metrics count outcomes only.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from django.conf import settings

from apps.catalog import images
from apps.core.problems import DomainError
from apps.dropin.faces import FaceBackendUnavailable, FaceRejected, UnreadableImage, get_backend
from apps.dropin.metrics import findme_search_counted
from apps.dropin.selectors import indexed_face_batches, photo_of_subject
from apps.dropin.services import SELFIE_FORMATS, SELFIE_MAX_PIXELS, photo_collection_name
from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.tenancy.context import tenant_context

logger = logging.getLogger("darkroom.dropin.findme")


class FindMeUnavailable(DomainError):
    """Drop-in is switched off (DROPIN_ENABLED) or its kill switch is engaged."""

    status_code = 503
    slug = "find-me-unavailable"
    title = "Find me is unavailable"
    when_it_happens = 'Finding one\'s photos in the shop by a selfie ("Find me") is switched off for now.'
    what_to_do = "Try again later; meanwhile, the event's photos can be browsed in its gallery."


@dataclass(frozen=True)
class PhotoHit:
    photo_id: int
    similarity: float  # 0..1, higher is closer


def photos_find_by_selfie(*, tenant_id: int, event_id: int, image: bytes, limit: int = 200) -> list[PhotoHit]:
    """Photos of the event (derivatives ready) in which the selfie's face appears, best first.

    At most `limit` photos, one hit per photo (its best face), ties by photo id. Reads in the
    tenant's context (RLS); writes nothing. Call it outside a transaction: the backend call
    (Rekognition, or dlib for ~0.5 s) would hold the transaction open.
    Raises FindMeUnavailable (drop-in off or its kill switch engaged), NoFaceFound, SeveralFaces,
    UnreadableImage (all FaceRejected: the selfie is unusable; also a selfie over
    DROPIN_MAX_SELFIE_BYTES or SELFIE_MAX_PIXELS, or not JPEG/PNG/WebP), FaceBackendUnavailable
    (passing: the shopper may retry).
    """
    if not settings.DROPIN_ENABLED or not capability_enabled(Capability.DROPIN):
        findme_search_counted("disabled")
        raise FindMeUnavailable("Finding your photos by selfie is switched off for now; please try again later.")
    try:
        hits = _search(tenant_id=tenant_id, event_id=event_id, image=image, limit=limit)
    except FaceRejected:
        findme_search_counted("rejected")
        raise
    except FaceBackendUnavailable:
        findme_search_counted("unavailable")
        logger.warning("find-me search failed (face backend)", extra={"tenant_id": tenant_id, "event_id": event_id})
        raise
    findme_search_counted("found" if hits else "none")
    return hits


def _search(*, tenant_id: int, event_id: int, image: bytes, limit: int) -> list[PhotoHit]:
    if len(image) > settings.DROPIN_MAX_SELFIE_BYTES:
        raise UnreadableImage(f"The selfie is larger than {settings.DROPIN_MAX_SELFIE_BYTES} bytes.")
    try:
        # The header only: a few hundred bytes may claim a decompression bomb's pixel count.
        images.probe_image(io.BytesIO(image), allowed_formats=SELFIE_FORMATS, max_pixels=SELFIE_MAX_PIXELS)
    except images.ImageRejected as exc:
        raise UnreadableImage(str(exc)) from exc
    backend = get_backend()
    max_faces = settings.FINDME_MAX_FACES
    with tenant_context(tenant_id):
        matches = backend.search_selfie(
            collection=photo_collection_name(tenant_id=tenant_id, event_id=event_id),
            image=image,
            indexed=indexed_face_batches(
                tenant_id=tenant_id,
                event_id=event_id,
                backend=backend.name,
                batch_size=settings.FINDME_BATCH_SIZE,
                max_faces=max_faces,
            ),
        )
    hits: list[PhotoHit] = []
    for match in matches:  # best first, one per subject
        photo_id = photo_of_subject(match.subject)
        if photo_id is not None:
            hits.append(PhotoHit(photo_id=photo_id, similarity=min(1.0, max(0.0, match.similarity))))
    hits.sort(key=lambda hit: (-hit.similarity, hit.photo_id))
    return hits[: max(limit, 0)]
