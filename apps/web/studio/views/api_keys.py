"""API keys (owners only): the studio's keys, creating one (its secret shown once) and revoking one.

The secret is shown once, right after creation, and is never in a URL, a flash message or a log
line. The create form's effect runs inside `submit_once`'s transaction: it issues the key, puts
the secret in a one-time slot of the session (keyed by the new key's id) and saves the session in
that same transaction, then redirects to `?created=<id>`, which names the key, not its secret.
The page's next GET pops the slot and shows the secret; the session no longer holds it. So:

* a double-submitted or resubmitted form is replayed (303) to the same `?created=<id>`, and a
  replay exists only once the first submission committed, slot included: whichever redirect the
  browser follows first shows the secret, every later GET finds no slot;
* a refresh or Back finds no slot either (studio pages are `no-store`, so the browser asks
  again) and says that the secret was shown already;
* a slot nobody claims within REVEAL_SECONDS (the browser never followed the redirect) is never
  shown and is dropped at the page's next visit; signing out flushes the whole session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from apps.tenancy import selectors
from apps.tenancy.models import ApiKey
from apps.tenancy.services import IssuedApiKey, api_key_issue, api_key_revoke
from apps.web.studio.access import API_KEY_MANAGE_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import ApiKeyForm, ApiKeyRevokeForm
from apps.web.studio.views.common import page_of, submit

REVEAL_SESSION_KEY = "studio_api_key_reveal"
REVEAL_SECONDS = 600
CREATED_PARAM = "created"


@dataclass(frozen=True)
class Revealed:
    api_key: ApiKey
    raw_key: str


def _list_url(**query: int) -> str:
    url = reverse("studio:api-keys")
    return f"{url}?{urlencode(query)}" if query else url


def _when(moment: datetime) -> str:
    return dateformat.format(timezone.localtime(moment), "j M Y, H:i")


# --- the one-time slot ----------------------------------------------------------------------


def _hold_for_reveal(request: HttpRequest, studio: Studio, issued: IssuedApiKey) -> None:
    """Put the new key's secret in its session slot and save the session now.

    Called inside `submit_once`'s transaction: with the database session backend the slot
    commits with the key and the form's idempotency row, so no replay of the form can be
    answered before the slot exists. If that transaction fails after this, the row rolls back
    and the request ends in a 500, which SessionMiddleware does not save: no slot is left.
    """
    slots = dict(request.session.get(REVEAL_SESSION_KEY) or {})
    slots[str(issued.api_key.pk)] = {
        "tenant_id": studio.tenant_id,
        "raw_key": issued.raw_key,
        "until": timezone.now().timestamp() + REVEAL_SECONDS,
    }
    request.session[REVEAL_SESSION_KEY] = slots
    request.session.save()


def _take_revealed(request: HttpRequest, studio: Studio) -> list[Revealed]:
    """Pop this studio's slots (every one: a slot is read once) and drop expired ones; return the
    secrets of those still fresh whose key is this studio's and not revoked."""
    slots = request.session.get(REVEAL_SESSION_KEY)
    if not slots:
        return []
    now = timezone.now().timestamp()
    kept: dict[str, dict[str, object]] = {}
    taken: list[tuple[int, str]] = []
    for key_id, slot in slots.items():
        if not isinstance(slot, dict) or not isinstance(slot.get("until"), int | float) or slot["until"] < now:
            continue
        if slot.get("tenant_id") == studio.tenant_id:
            taken.append((int(key_id), str(slot["raw_key"])))
        else:
            kept[key_id] = slot
    if kept:
        request.session[REVEAL_SESSION_KEY] = kept
    else:
        del request.session[REVEAL_SESSION_KEY]
    revealed = []
    for key_id, raw_key in sorted(taken, reverse=True):
        api_key = selectors.api_key_get(tenant_id=studio.tenant_id, api_key_id=key_id)
        if api_key is not None and api_key.revoked_at is None:
            revealed.append(Revealed(api_key=api_key, raw_key=raw_key))
    return revealed


def _created_id(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 18 else None


# --- the list and the create form -----------------------------------------------------------


def _render_list(
    request: HttpRequest, studio: Studio, form: ApiKeyForm, *, status: int, reveal: bool = False
) -> HttpResponse:
    revealed = _take_revealed(request, studio) if reveal else []
    created_id = _created_id(request.GET.get(CREATED_PARAM))
    shown_before = None
    if created_id is not None and all(r.api_key.pk != created_id for r in revealed):
        shown_before = selectors.api_key_get(tenant_id=studio.tenant_id, api_key_id=created_id)
    context = {
        "studio": studio,
        "page": page_of(request, selectors.api_keys_of_tenant(tenant_id=studio.tenant_id)),
        "form": form,
        "revealed": revealed,
        "shown_before": shown_before,
    }
    return render(request, "studio/api_keys.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*API_KEY_MANAGE_ROLES)
def api_keys(request: HttpRequest, studio: Studio) -> HttpResponse:
    if request.method != "POST":
        return _render_list(request, studio, ApiKeyForm(), status=200, reveal=True)
    form = ApiKeyForm(request.POST)

    def effect() -> str:
        name = form.cleaned_data["name"]
        issued = api_key_issue(tenant=studio.org, name=name, actor=studio.user)
        _hold_for_reveal(request, studio, issued)
        messages.success(request, f"API key “{name}” created.")
        return _list_url(**{CREATED_PARAM: issued.api_key.pk})

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_list(request, studio, form, status=status),
    )


# --- revoking one ---------------------------------------------------------------------------


def _api_key_or_404(request: HttpRequest, studio: Studio, api_key_id: int) -> ApiKey | HttpResponse:
    api_key = selectors.api_key_get(tenant_id=studio.tenant_id, api_key_id=api_key_id)
    if api_key is None:
        return problem_page(
            request, studio, status=404, title="API key not found", message="This studio has no such API key."
        )
    return api_key


def _render_revoke(
    request: HttpRequest, studio: Studio, api_key: ApiKey, form: ApiKeyRevokeForm, *, status: int
) -> HttpResponse:
    context = {"studio": studio, "api_key": api_key, "form": form}
    return render(request, "studio/api_key_revoke.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*API_KEY_MANAGE_ROLES)
def api_key_revoke_view(request: HttpRequest, studio: Studio, api_key_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes. Revoking a revoked key changes nothing."""
    api_key = _api_key_or_404(request, studio, api_key_id)
    if isinstance(api_key, HttpResponse):
        return api_key
    if request.method != "POST":
        return _render_revoke(request, studio, api_key, ApiKeyRevokeForm(), status=200)
    form = ApiKeyRevokeForm(request.POST)

    def effect() -> str:
        # Read again inside the transaction: another tab may have revoked it since the page.
        current = selectors.api_key_get(tenant_id=studio.tenant_id, api_key_id=api_key.pk)
        if current is None or current.revoked_at is not None:
            when = f" on {_when(current.revoked_at)}" if current is not None and current.revoked_at else ""
            messages.info(request, f"API key “{api_key.name}” was already revoked{when}; nothing changed.")
            return _list_url()
        api_key_revoke(tenant=studio.org, api_key_id=current.pk, actor=studio.user)
        messages.success(
            request,
            f"API key “{current.name}” (drk_{current.prefix}_…) revoked: requests that use it are refused from now on.",
        )
        return _list_url()

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_revoke(request, studio, api_key, form, status=status),
    )
