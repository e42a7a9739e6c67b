"""Read-only view of the fencing leases (platform rows; written only by `apps.core.locks`), and
what the other apps' admins share: amounts shown as money (`money_display`, `ShownInPlace`), long
text cut short in lists (`short_text`), a search that finds a row by its id, or an order by its
short id (`SearchById`), list actions offered as buttons on a row's own page (`RowActions`) and
the page an action asks a note on before it acts (`ask_for_note`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.text import Truncator

from apps.core.admin_base import ReadOnlyAdmin
from apps.core.models import Lease
from apps.payments.providers.base import money_text


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "epoch", "state", "holder", "acquired_at", "expires_at", "released_at")
    search_fields = ("name", "holder")
    ordering = ("name",)

    @admin.display(description="state")
    def state(self, obj: Lease) -> str:
        return obj.state


def money_display(amount_field: str, *, description: str, currency: str = "currency") -> Callable[[Any, Any], str]:
    """A read-only admin column (list or page) showing the row's `amount_field` (minor units) as
    amount and currency ("8.10 EUR"), sorted by the stored amount. `currency` names the row's
    currency, through relations with dots ("account.currency"; join them in the list's
    `list_select_related`). Name the column `..._money`: the admin's stylesheet
    (templates/admin/base_site.html) right-aligns those cells."""

    def show(model_admin: Any, obj: Model) -> str:
        code: Any = obj
        for part in currency.split("."):
            code = getattr(code, part)
        return money_text(getattr(obj, amount_field), str(code))

    return admin.display(description=description, ordering=amount_field)(show)


def short_text(field: str, *, description: str, chars: int = 120) -> Callable[[Any, Any], str]:
    """A list column showing the start of the row's text `field` (an error, say), cut at `chars`
    characters with "…"; the row's page shows all of it."""

    def show(model_admin: Any, obj: Model) -> str:
        return Truncator(getattr(obj, field) or "").chars(chars)

    return admin.display(description=description)(show)


# The start of an id as the shop, the wallet and the e-mails show an order ("order 09e10db3"),
# or more of it: 8 to 31 hex digits (dashes ignored); 32 are a whole id.
_ID_START = re.compile(r"[0-9a-f]{8,31}")


def uuid_span(text: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The ids `text` names, lowest and highest: a whole UUID (any case, with or without dashes)
    names itself; the start of one (`_ID_START`) every id from it followed by zeros to it followed
    by f's ("09e10db3" -> 09e10db3-0000-0000-0000-000000000000 .. 09e10db3-ffff-ffff-ffff-ffffffffffff).
    None for other text."""
    term = text.strip()
    try:
        whole = uuid.UUID(term)
    except ValueError:
        digits = term.replace("-", "").lower()
        if not _ID_START.fullmatch(digits):
            return None
        return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
    return whole, whole


class SearchById(admin.ModelAdmin):  # type: ignore[type-arg]
    """The list's search also finds a row by an id, besides what `search_fields` find: by each
    UUID field of `searched_ids` (the row's own id unless said otherwise), given whole as the list
    shows it, in any case, with or without dashes; and by each of `searched_by_start` given its
    first 8 or more characters too, as the shop shows an order ("order 09e10db3"). Either is a
    lookup of the field's index (a whole id, or the range of ids with that start), never a cast of
    the ids to text. Text that is not an id searches `search_fields` alone: PostgreSQL is never
    asked to read it as a UUID."""

    searched_ids: ClassVar[tuple[str, ...]] = ("pk",)
    searched_by_start: ClassVar[tuple[str, ...]] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        span = uuid_span(search_term)
        if span is None:
            return found, may_have_duplicates
        low, high = span
        by_id = Q()
        if low == high:
            for field in self.searched_ids:
                by_id |= Q(**{field: low})
        else:
            for field in self.searched_by_start:
                by_id |= Q(**{f"{field}__range": span})
        return (found | queryset.filter(by_id), may_have_duplicates) if by_id else (found, may_have_duplicates)


class ShownInPlace(admin.ModelAdmin):  # type: ignore[type-arg]
    """On a row's page, each model field named in `shown_in_place_of` is replaced, where it
    stands, by the read-only display it names (an amount in minor units by `money_display`, a
    stored status by what it means), so the page never shows the stored value bare."""

    shown_in_place_of: ClassVar[dict[str, str]] = {}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:  # type: ignore[override]
        shown = set(self.shown_in_place_of.values())
        return [
            self.shown_in_place_of.get(name, name) if isinstance(name, str) else name
            for name in super().get_fields(request, obj)
            if not (isinstance(name, str) and name in shown)
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, *(name for name in self.shown_in_place_of.values() if name not in readonly)]


class RowActions(admin.ModelAdmin):  # type: ignore[type-arg]
    """List actions offered as buttons on a row's own page too: `row_actions` maps an action's
    name to its button's label, and `row_action_offered` says which rows a button is shown on.

    The button posts (the admin checks its CSRF token) to `<row>/actions/<name>/`, which runs the
    list action itself on that one row: its service call, audit and message are the list's, and
    so is its permission (an action the user is not offered, `get_actions`, is refused with 403).
    Back to the row's page after, unless the action answers with a page of its own."""

    change_form_template = "admin/change_form_row_actions.html"
    row_actions: ClassVar[dict[str, str]] = {}

    def row_action_offered(self, obj: Any, action: str) -> bool:
        """Whether the row's page shows the button of `action` (the action decides what it does
        with the row all the same)."""
        return True

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.row_action_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_row_action"
        return [path("<path:object_id>/actions/<str:action>/", view, name=name), *super().get_urls()]

    def row_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        offered = self.get_actions(request).get(action)
        if action not in self.row_actions or offered is None:
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} {object_id}.")
        run = offered[0]
        answer = run(self, request, self.get_queryset(request).filter(pk=obj.pk))
        if isinstance(answer, HttpResponse):
            return answer
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)])
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        buttons = []
        if obj is not None:
            offered = self.get_actions(request)
            name = f"admin:{self.opts.app_label}_{self.opts.model_name}_row_action"
            buttons = [
                {"url": reverse(name, args=[quote(obj.pk), action]), "label": label}
                for action, label in self.row_actions.items()
                if action in offered and self.row_action_offered(obj, action)
            ]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "row_actions": buttons})


def note_field(*, label: str, help_text: str, max_length: int) -> forms.CharField:
    """The note field of an `ask_for_note` form: required, stripped (blank is refused)."""
    return forms.CharField(
        label=label, help_text=help_text, max_length=max_length, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


def ask_for_note(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    form_class: type[forms.Form],
    template: str,
    title: str,
    columns: Sequence[str],
    cells: Callable[[Any], Sequence[str]],
    submit: str,
) -> str | TemplateResponse:
    """The page a list action shows before it acts: the selected rows (a table of `columns`, the
    `cells` of each row, in id order) and a form asking for a note (`form_class`, whose `note`
    field is `note_field`). Returns the note (stripped) once that form is posted back valid; else
    the page, first or again with the note's error, for the action to return as is (through
    `RowActions` too). Nothing is written either way: the action writes once it has the note.

    `template` extends admin/confirm_with_note.html and says, in its `explanation` block, what
    confirming does. The page posts back where it was opened (the list, with its filters, or the
    row's button), naming the action and the rows; its Cancel link goes back there (the list, or
    the row's page), changing nothing."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        return str(form.cleaned_data["note"])
    opts = model_admin.model._meta
    match = request.resolver_match
    if match is not None and match.url_name == f"{opts.app_label}_{opts.model_name}_row_action":
        back = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[match.kwargs["object_id"]])
    else:
        back = request.get_full_path()
    rows = list(queryset.order_by("pk"))
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "opts": opts,
            "columns": columns,
            "rows": [{"pk": row.pk, "cells": cells(row)} for row in rows],
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit": submit,
            "cancel_url": back,
        },
    )
