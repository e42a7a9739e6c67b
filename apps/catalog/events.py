"""Changing an event after it exists: its title, date, visibility and access code.

`event_update` uses plain `@transaction.atomic`: it joins the transaction of the Idempotency-Key
protocol (API) or of `submit_once` (studio forms), so its row and its audit row commit with the
key row and a retried request or a double-clicked form has one effect. It runs in
`tenant_context(tenant_id)`.

**The slug never changes**: shop links stay valid, and the reserved-slug and unique-slug
constraints checked when the event was created keep holding.

**Access codes.** An access-code event stores only `make_password(code)` (as `event_create`
does); a public one stores none (`catalog_event_access_code_matches_visibility`). The shop
remembers an unlocked event in the shopper's session together with a keyed fingerprint of that
hash (`apps.catalog.selectors.access_code_fingerprint`), never the event id alone. A new code
means a new hash (a fresh salt, even for the same characters), so every session that unlocked
the old code sees a different fingerprint and has to enter the new code. Giving the code the
event already has is no change: the hash is kept, and so are those sessions.
"""

from __future__ import annotations

from datetime import date as Date

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction

from apps.catalog.errors import EventNotFound
from apps.catalog.models import Event
from apps.catalog.products import Actor
from apps.core.problems import InvalidInput
from apps.core.text import title_problem
from apps.tenancy.context import tenant_context
from apps.tenancy.services import audit_record

ACCESS_CODE_MIN_LENGTH = 4
# What a code given for a public event is told, at `access_code`, by the API and the studio's forms.
ACCESS_CODE_ONLY_WHEN_PROTECTED = "Only for events protected by an access code."
TITLE_MAX_LENGTH = 200

EVENT_UPDATED = "catalog.event_updated"


def access_code_hash(*, visibility: str, access_code: str | None) -> str:
    """The stored hash for a new code of an event with `visibility`: `make_password(code)` for an
    access-code event, "" for a public one. Raises InvalidInput when the code does not match the
    visibility (missing or shorter than ACCESS_CODE_MIN_LENGTH, beginning or ending with white
    space, or given for a public event). Spaces inside a code are kept: it may be a phrase."""
    if visibility == Event.Visibility.ACCESS_CODE:
        if not access_code or len(access_code) < ACCESS_CODE_MIN_LENGTH:
            raise InvalidInput(
                "An access-code event needs an access code.",
                extra={"errors": {"access_code": [f"At least {ACCESS_CODE_MIN_LENGTH} characters."]}},
            )
        if access_code != access_code.strip():
            # "    " passed the length rule; "code " locked out every shopper who typed "code".
            raise InvalidInput(
                "An access code cannot begin or end with a space.",
                extra={
                    "errors": {"access_code": ["Without spaces at its start or end: shoppers would not type them."]}
                },
            )
        return make_password(access_code)
    if access_code:
        raise InvalidInput(
            "A public event has no access code.",
            extra={"errors": {"access_code": [ACCESS_CODE_ONLY_WHEN_PROTECTED]}},
        )
    return ""


# An event's date is a real day of a shoot or a show: a typo of the year (0001, 9999) would sort
# it first or last for ever and read as nonsense in the shop and in e-mails.
EVENT_YEARS = (1900, 2100)


def event_date_problem(value: Date) -> str:
    """What is wrong with an event's date, as a sentence for the user; "" when nothing is."""
    first, last = EVENT_YEARS
    if not first <= value.year <= last:
        return f"An event's date is between {first} and {last}."
    return ""


def _check_fields(*, title: str | None, visibility: str | None, date: Date | None = None) -> None:
    errors: dict[str, list[str]] = {}
    if title is not None and (problem := title_problem(title, max_length=TITLE_MAX_LENGTH)):
        errors["title"] = [problem]
    if date is not None and (problem := event_date_problem(date)):
        errors["date"] = [problem]
    if visibility is not None and visibility not in Event.Visibility.values:
        errors["visibility"] = [f"One of: {', '.join(Event.Visibility.values)}."]
    if errors:
        raise InvalidInput("The event change is not well formed; see `errors`.", extra={"errors": errors})


@transaction.atomic
def event_update(
    *,
    tenant_id: int,
    event_id: int,
    title: str | None = None,
    date: Date | None = None,
    visibility: str | None = None,
    access_code: str | None = None,
    actor: Actor,
) -> Event:
    """Change an event's title, date, visibility or access code (None: leave it); never its slug.

    Joins the caller's transaction and locks the event row (FOR NO KEY UPDATE: concurrent editors
    serialise and each change is audited once, while photos and products referencing the event
    are not blocked). Switching to `access_code` needs a code unless the event already has one;
    switching to `public` drops the stored hash; a code on a protected event replaces its code,
    which locks out shop sessions that unlocked the old one (see the module docstring). One audit
    row (`catalog.event_updated`) names the fields that really changed, never the code; a call
    that changes nothing writes nothing. Raises InvalidInput (nothing given, a blank or too long
    title, an unknown visibility, a code that does not match the visibility) and EventNotFound
    (unknown, or another tenant's: RLS hides it); each writes nothing.
    """
    if title is None and date is None and visibility is None and access_code is None:
        raise InvalidInput(
            "Nothing to change: give at least one of title, date, visibility, access_code.",
            extra={"errors": {"non_field_errors": ["Give at least one field to change."]}},
        )
    _check_fields(title=title, visibility=visibility, date=date)
    with tenant_context(tenant_id):
        event = Event.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=event_id).first()
        if event is None:
            raise EventNotFound(f"Event {event_id} does not exist.")
        changed: list[str] = []
        if title is not None and title != event.title:
            event.title = title
            changed.append("title")
        if date is not None and date != event.date:
            event.date = date
            changed.append("date")

        new_visibility = visibility if visibility is not None else event.visibility
        keeps_code = new_visibility == Event.Visibility.ACCESS_CODE and bool(event.access_code_hash)
        if keeps_code and (not access_code or check_password(access_code, event.access_code_hash)):
            # No code, or the one it already has: the hash stays, and so do unlocked sessions.
            new_hash = event.access_code_hash
        else:
            new_hash = access_code_hash(visibility=new_visibility, access_code=access_code)
        if new_visibility != event.visibility:
            event.visibility = new_visibility
            changed.append("visibility")
        if new_hash != event.access_code_hash:
            event.access_code_hash = new_hash
            if new_hash:
                changed.append("access_code")

        if not changed:
            return event
        update_fields: list[str] = [f for f in ("title", "date", "visibility") if f in changed]
        if "access_code" in changed or "visibility" in changed:
            update_fields.append("access_code_hash")
        event.save(update_fields=update_fields)
        audit_record(
            action=EVENT_UPDATED,
            tenant_id=tenant_id,
            actor_user=actor.user,
            actor_label=actor.label,
            target_type="event",
            target_id=str(event.pk),
            data={"slug": event.slug, "fields": changed, "visibility": event.visibility},
        )
        return event
