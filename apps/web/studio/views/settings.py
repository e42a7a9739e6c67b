"""The studio's settings (owners): its name, as shop pages and e-mails show it. The slug stays:
it is in every shop link, order link and receipt already sent."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from apps.tenancy.services import organization_rename
from apps.web.studio.access import STUDIO_SETTINGS_ROLES, Studio, studio_page
from apps.web.studio.forms import StudioSettingsForm
from apps.web.studio.views.common import submit


def _render(request: HttpRequest, studio: Studio, form: StudioSettingsForm, *, status: int = 200) -> HttpResponse:
    return render(request, "studio/settings.html", {"studio": studio, "form": form}, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*STUDIO_SETTINGS_ROLES)
def studio_settings(request: HttpRequest, studio: Studio) -> HttpResponse:
    """GET: the form with the studio's name; POST: rename it, once per rendered form."""
    if request.method == "GET":
        return _render(request, studio, StudioSettingsForm(initial={"name": studio.org.name}))
    form = StudioSettingsForm(request.POST)

    def effect() -> str:
        renamed = organization_rename(tenant_id=studio.tenant_id, name=form.cleaned_data["name"], actor=studio.user)
        messages.success(request, f"The studio is now called “{renamed.name}”.")
        return reverse("studio:settings")

    return submit(
        request, studio, form=form, effect=effect, rerender=lambda status: _render(request, studio, form, status=status)
    )
