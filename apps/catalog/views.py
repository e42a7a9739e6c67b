"""`GET /media/<public prefix>/<name>`: the public derivatives (watermarked previews and
thumbnails) served from the `default` storage, for deployments whose storage has no web server
of its own (the local filesystem of `make run`).

Only names under CATALOG_PUBLIC_PREFIX are ever served, whatever the path says: originals live
under the private prefix and are only streamed through an entitlement's signed download. With an
S3-compatible storage (or a CDN) the storage's own URLs are used and this view is off
(`DARKROOM_SERVE_PUBLIC_MEDIA`). Derivative names are random and never reused, so a response may
be cached for a year.
"""

from __future__ import annotations

import mimetypes
import posixpath

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

CACHE_CONTROL = "public, max-age=31536000, immutable"


def public_name(path: str) -> str | None:
    """The storage name `path` names under the public prefix, or None when it would leave it
    (`..`, absolute paths, backslashes, empty segments)."""
    if not path or "\\" in path or "\x00" in path:
        return None
    normal = posixpath.normpath(path)
    if normal != path or normal.startswith(("/", "../")) or normal in (".", ".."):
        return None
    return f"{settings.CATALOG_PUBLIC_PREFIX}/{normal}"


@require_safe
def public_media(request: HttpRequest, path: str) -> FileResponse:
    """One public derivative; 404 for anything else."""
    name = public_name(path)
    if name is None or not default_storage.exists(name):
        raise Http404("No such picture.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response
