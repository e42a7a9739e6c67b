"""Shopper-facing plain views of commerce: the signed download of an original."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from apps.commerce.selectors import download_resolve
from apps.core.problems import DomainError, domain_error_page, problem_page_or_json


@require_GET
def download(request: HttpRequest, token: str) -> HttpResponseBase:
    """`GET /downloads/<token>`: stream the original a valid token grants, else a 403/404 refusal.

    No session or API key: the signed token is the credential (see `download_resolve`). The
    file is streamed from the storage API (local disk or S3), never through a public URL. The
    link is clicked from a receipt or the order page, so a refusal is an HTML page with the same
    status for a browser and an RFC 7807 problem for any other client.
    """
    try:
        target = download_resolve(token=token)
    except DomainError as exc:
        return domain_error_page(request, exc)
    try:
        handle = default_storage.open(target.storage_name, "rb")
    except FileNotFoundError:
        return problem_page_or_json(request, 404, "Not found", "The original is not available.", slug="not-found")
    response = FileResponse(handle, as_attachment=True, filename=target.filename)
    response["Cache-Control"] = "private, no-store"
    return response
