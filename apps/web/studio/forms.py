"""HTML forms of the studio dashboard: they parse and check input only; services decide.

Every state-changing form renders a fresh `nonce` (`{{ form.nonce }}`) for `submit_once`, so a
double submit of one rendered form has one effect. A re-rendered form (after an error) gets a new
nonce, since the refused submission stored nothing.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import validate_email
from django.utils.text import slugify

from apps.catalog.models import Event, Price, PriceList, ProductKind
from apps.catalog.products import RESTOCK_MAX_UNITS
from apps.catalog.services import PRICE_MAX_MINOR, PriceIn
from apps.catalog.withdrawal import WITHDRAWN_REASON_MAX_LENGTH
from apps.commerce.models import CARRIER_MAX_LENGTH, TRACKING_REFERENCE_MAX_LENGTH
from apps.core.currencies import CURRENCY_EXPONENTS, currency_supported, unsupported_currency_message
from apps.core.text import title_problem
from apps.notifications.models import Announcement
from apps.notifications.services import (
    ANNOUNCEMENT_BODY_MAX_LENGTH,
    ANNOUNCEMENT_TITLE_MAX_LENGTH,
    MAX_ATTENDEES_PER_REGISTRATION,
    AttendeeIn,
    attendee_name_problem,
)
from apps.payments.providers.base import currency_exponent, major_to_minor, minor_to_major, money_text
from apps.payouts.models import PROVIDER_CHOICES
from apps.tenancy.models import Membership
from apps.tenancy.services import API_KEY_NAME_MAX_LENGTH
from apps.web.submit_once import form_nonce

MAX_FILES_PER_UPLOAD = 50
# An amount field holds at most 20 characters: as many digits are read, so that a long number is
# refused as too high rather than as not a number.
AMOUNT_MAX_LENGTH = 20

_AMOUNT_TEXT = re.compile(rf"(?P<units>[0-9]{{1,{AMOUNT_MAX_LENGTH}}})(?:[.,](?P<fraction>[0-9]+))?")


def amount_text_to_minor(raw: str, currency: str) -> int:
    """An amount typed in major units ("9", "9.5", "25,50") -> minor units of `currency`.

    One decimal separator, "." or ",", and at most as many decimals as the currency has; no
    thousands separators, no signs or exponents. "1,000" is refused rather than guessed (a
    thousand, or one with a decimal comma?), and so is "1.000": a price is never read as
    something other than what the owner meant. `currency` must be one Darkroom sells in
    (UnsupportedCurrency otherwise). Raises ValueError with a message for the form."""
    example = _amount_example(currency)
    match = _AMOUNT_TEXT.fullmatch(raw)
    if match is None:
        raise ValueError(f"Not an amount in {currency}: write digits, e.g. {example}, without thousands separators.")
    fraction = match["fraction"]
    if fraction is not None and len(fraction) > currency_exponent(currency):
        if currency_exponent(currency) == 0:
            raise ValueError(f"{currency} has no decimals; write whole units without separators, e.g. {example}.")
        raise ValueError(
            f"Not an amount in {currency}: at most {currency_exponent(currency)} decimals and no thousands"
            f" separators, e.g. {example}."
        )
    return major_to_minor(f"{match['units']}.{fraction}" if fraction else match["units"], currency)


def _amount_example(currency: str) -> str:
    """Nine units of `currency`, written with its decimals ("9.00", "9", "9.000"); a code outside
    the table (an old price list) with 2, as `minor_to_major` shows it."""
    return minor_to_major(9 * 10 ** CURRENCY_EXPONENTS.get(currency, 2), currency)


PRINT_PRICE_ROWS_EMPTY = 2

# A field whose text is kept exactly as typed (an access code is compared case-sensitively, and
# the shop's field takes it as typed): phone keyboards must not capitalise, correct or mark it.
AS_TYPED = {"autocapitalize": "none", "autocorrect": "off", "spellcheck": "false"}


class StudioForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Several forms share a page: element ids carry the form's name.
        kwargs.setdefault("auto_id", f"{type(self).__name__.lower().removesuffix('form')}_%s")
        super().__init__(*args, **kwargs)

    @property
    def nonce(self) -> str:
        """A fresh nonce each time the form is rendered."""
        return form_nonce()

    def _choices(self, name: str, choices: list[tuple[Any, str]]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices


class EventForm(StudioForm):
    title = forms.CharField(max_length=200)
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    slug = forms.SlugField(
        max_length=80,
        required=False,
        help_text="Part of the event's address; made from the title when left empty.",
        widget=forms.TextInput(attrs=AS_TYPED),
    )
    visibility = forms.ChoiceField(choices=Event.Visibility.choices, initial=Event.Visibility.PUBLIC)
    access_code = forms.CharField(
        max_length=128,
        required=False,
        strip=False,
        help_text="Only for events protected by an access code (at least 4 characters).",
        widget=forms.TextInput(attrs={"autocomplete": "off", **AS_TYPED}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("slug") and data.get("title"):
            data["slug"] = slugify(data["title"])[:80].strip("-")
            if not data["slug"]:
                self.add_error("slug", "Give the event an address made of letters, digits and hyphens.")
        return data


# The fields of the edit form that carry the value the page showed (see EventEditForm).
EVENT_EDIT_FIELDS = ("title", "date", "visibility")


class EventEditForm(StudioForm):
    """Change an event's title, date, visibility or access code; its address (slug) stays. An
    empty access code keeps the event's current code.

    Each field carries the value the page showed (a hidden initial), and only the fields changed
    from it are saved (`changed_fields`): a page left open in another tab saves what was changed
    there, never the stale values of the rest."""

    title = forms.CharField(max_length=200, show_hidden_initial=True)
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), show_hidden_initial=True)
    visibility = forms.ChoiceField(choices=Event.Visibility.choices, show_hidden_initial=True)
    access_code = forms.CharField(
        max_length=128,
        required=False,
        strip=False,
        label="New access code",
        help_text=(
            "Leave empty to keep the current code. A new code (at least 4 characters) replaces it: "
            "shoppers who entered the old one must enter the new one."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off", **AS_TYPED}),
    )

    @classmethod
    def for_event(cls, event: Event) -> EventEditForm:
        """An unbound form showing the event as it is (never its code: only a hash is stored)."""
        return cls(initial={"title": event.title, "date": event.date, "visibility": event.visibility})

    def changed_fields(self) -> dict[str, Any]:
        """The cleaned title, date and visibility the member changed on the page (None: kept)."""
        return {name: self.cleaned_data[name] if name in self.changed_data else None for name in EVENT_EDIT_FIELDS}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImagesField(forms.Field):
    """One or more files; each empty or nameless file is an error naming that file."""

    widget = MultipleFileInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}))
        super().__init__(**kwargs)

    def to_python(self, data: Any) -> list[UploadedFile]:
        if not data:
            return []
        files = list(data) if isinstance(data, list | tuple) else [data]
        return [f for f in files if f is not None]

    def validate(self, value: list[UploadedFile]) -> None:
        if not value:
            raise forms.ValidationError("Choose at least one photo.", code="required")
        if len(value) > MAX_FILES_PER_UPLOAD:
            raise forms.ValidationError(f"Send at most {MAX_FILES_PER_UPLOAD} photos at a time.", code="too_many")
        errors = [
            forms.ValidationError(f"{f.name or 'a file'}: the file is empty.", code="empty")
            for f in value
            if not f.size
        ]
        if errors:
            raise forms.ValidationError(errors)


class UploadForm(StudioForm):
    images = MultipleImagesField(label="Photos", help_text="JPEG, PNG or WebP; several at once.")
    photographer = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Photographer", help_text="Owners may upload for others."
    )

    def __init__(self, *args: Any, photographers: list[tuple[int, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if photographers:
            self._choices("photographer", [("", "Me"), *photographers])
        else:
            del self.fields["photographer"]


class ProductForm(StudioForm):
    kind = forms.ChoiceField(choices=ProductKind.choices)
    photo = forms.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False, label="Photo number", help_text="For downloads and prints."
    )
    size = forms.CharField(max_length=32, required=False, help_text="Prints only, e.g. A4.")
    stock_quantity = forms.IntegerField(
        min_value=0, max_value=10_000_000, required=False, label="Stock", help_text="Prints only: units for sale."
    )
    sku = forms.RegexField(
        regex=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=64,
        required=False,
        label="SKU",
        help_text="Made up when left empty.",
    )


class DownloadsOfferForm(StudioForm):
    """Offer every photo of the event as a download, now and when uploaded later ("1", also when
    left out: a page rendered before the field existed), or stop offering photos uploaded later
    ("0"). One button; the page renders the one that changes the event's current choice."""

    new_photos = forms.ChoiceField(choices=[("1", "Offer"), ("0", "Stop")], required=False, widget=forms.HiddenInput)

    def stops(self) -> bool:
        """Whether the member asked to stop offering photos uploaded later."""
        return bool(self.cleaned_data["new_photos"] == "0")


class ProductActiveForm(StudioForm):
    """Stop or resume selling one product (a button per row of the products table)."""

    active = forms.TypedChoiceField(
        choices=[("1", "Reactivate"), ("0", "Deactivate")], coerce=lambda value: value == "1", widget=forms.HiddenInput
    )


class RestockForm(StudioForm):
    """Add units to one print's stock (a small form per print row of the products table)."""

    add_quantity = forms.IntegerField(
        min_value=1, max_value=RESTOCK_MAX_UNITS, label="Add units", help_text="Units to add to this print's stock."
    )


class PriceCurrencyForm(StudioForm):
    """Price the event in another currency: every price of it is removed, to be set again
    (`apps.catalog.services.price_list_currency_change`). `current` is the price list's currency
    as the page shows it; the page sends it back in `expected_currency`, and the service refuses
    the change (409, nothing removed) if the event is priced in another currency by then, so a
    stale page never removes prices its owner has not seen."""

    currency = forms.RegexField(
        regex=r"^[A-Za-z]{3}$", max_length=3, label="New currency", help_text="ISO 4217, e.g. USD."
    )
    confirm = forms.BooleanField(
        label="Remove every price of this event",
        error_messages={"required": "Tick this to confirm: amounts do not carry over to another currency."},
    )
    expected_currency = forms.RegexField(
        regex=r"^[A-Za-z]{3}$",
        max_length=3,
        widget=forms.HiddenInput,
        error_messages={
            "required": "This page is out of date: check the event's prices, then change its currency again.",
            "invalid": "This page is out of date: check the event's prices, then change its currency again.",
        },
    )

    def __init__(self, *args: Any, current: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current

    def clean_currency(self) -> str:
        currency = str(self.cleaned_data["currency"]).upper()
        if not currency_supported(currency):
            raise forms.ValidationError(unsupported_currency_message(currency))
        if currency == self.current:
            raise forms.ValidationError(f"This event is already priced in {currency}.")
        return currency

    def clean_expected_currency(self) -> str:
        return str(self.cleaned_data["expected_currency"]).upper()


class PriceListForm(StudioForm):
    """The event's prices in one currency: downloads, the bulk product and print sizes. An empty
    amount leaves that price as it is (prices are upserted per kind and size).

    `fixed_currency` is the currency of the event's price list once it has one (only
    `PriceCurrencyForm` changes it): the field shows it, read-only, and an empty field means it.
    The currency must be one Darkroom sells in (`apps.core.currencies`), checked before any
    amount is read in it; the service checks it again for every caller."""

    currency = forms.RegexField(
        regex=r"^[A-Za-z]{3}$", max_length=3, help_text="ISO 4217, e.g. EUR. Every price of the event is in it."
    )
    download = forms.CharField(required=False, max_length=AMOUNT_MAX_LENGTH, label="Download (one photo)")
    bulk = forms.CharField(required=False, max_length=AMOUNT_MAX_LENGTH, label="All my photos of the event")

    def __init__(
        self,
        *args: Any,
        print_rows: int = PRINT_PRICE_ROWS_EMPTY,
        fixed_currency: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.print_rows = print_rows
        self.fixed_currency = fixed_currency
        if fixed_currency:
            currency = self.fields["currency"]
            currency.required = False
            currency.initial = fixed_currency
            currency.help_text = f"This event is priced in {fixed_currency} (“Change the currency” below)."
            currency.widget.attrs["readonly"] = True
        for i in range(print_rows):
            self.fields[f"print_size_{i}"] = forms.CharField(required=False, max_length=32, label="Print size")
            self.fields[f"print_amount_{i}"] = forms.CharField(
                required=False, max_length=AMOUNT_MAX_LENGTH, label="Print price"
            )

    @classmethod
    def for_price_list(cls, price_list: PriceList | None, prices: list[Price]) -> PriceListForm:
        """An unbound editor showing the event's currency (from its price list, which exists
        from the first price on) and current prices, with empty rows for new print sizes."""
        prints = [p for p in prices if p.kind == ProductKind.PRINT]
        currency = price_list.currency if price_list is not None else None
        form = cls(print_rows=len(prints) + PRINT_PRICE_ROWS_EMPTY, fixed_currency=currency)
        initial: dict[str, Any] = {"currency": currency or ""}
        for price in prices:
            if price.kind in (ProductKind.DOWNLOAD, ProductKind.BULK):
                initial[price.kind] = minor_to_major(price.amount_minor, price.currency)
        for i, price in enumerate(prints):
            initial[f"print_size_{i}"] = price.size
            initial[f"print_amount_{i}"] = minor_to_major(price.amount_minor, price.currency)
        form.initial = initial
        return form

    @property
    def amount_hint(self) -> str:
        """How to write an amount in the editor's currency, with an example in its own decimals
        ("9.00" for EUR, "9" for JPY, "9.000" for KWD); both kinds while none is chosen yet."""
        currency = self.fixed_currency
        if not currency and self.is_bound:
            typed = str(self.data.get(self.add_prefix("currency")) or "").upper()
            currency = typed if currency_supported(typed) else None
        if not currency:
            return (
                "Amounts in the currency's units, with as many decimals as it has "
                f"(e.g. {_amount_example('EUR')} in EUR, {_amount_example('JPY')} in JPY)."
            )
        if currency_supported(currency) and currency_exponent(currency) == 0:
            return f"Amounts in whole {currency}, without decimals (e.g. {_amount_example(currency)})."
        return f"Amounts in {currency} (e.g. {_amount_example(currency)})."

    def print_row_fields(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"print_size_{i}"], self[f"print_amount_{i}"]) for i in range(self.print_rows)]

    def _amount(self, field: str, currency: str) -> int | None:
        raw = (self.cleaned_data.get(field) or "").strip()
        if not raw:
            return None
        try:
            minor = amount_text_to_minor(raw, currency)
        except ValueError as exc:
            self.add_error(field, str(exc))
            return None
        if minor <= 0:
            self.add_error(field, "A price is more than zero.")
            return None
        if minor > PRICE_MAX_MINOR:
            self.add_error(field, f"A price is at most {money_text(PRICE_MAX_MINOR, currency)}.")
            return None
        return minor

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "currency" in self.errors:
            return data
        currency = (data.get("currency") or self.fixed_currency or "").upper()
        if not currency:
            return data
        if not currency_supported(currency):
            self.add_error("currency", unsupported_currency_message(currency))
            return data
        data["currency"] = currency
        prices: list[PriceIn] = []
        for kind in (ProductKind.DOWNLOAD, ProductKind.BULK):
            amount = self._amount(kind.value, currency)
            if amount is not None:
                prices.append(PriceIn(kind=kind.value, amount_minor=amount))
        sizes: set[str] = set()
        for i in range(self.print_rows):
            size = (data.get(f"print_size_{i}") or "").strip()
            amount = self._amount(f"print_amount_{i}", currency)
            if size and amount is None and f"print_amount_{i}" not in self.errors:
                self.add_error(f"print_amount_{i}", f"Give the price of the {size} print.")
            elif amount is not None and not size:
                self.add_error(f"print_size_{i}", "Give the print size this price is for.")
            elif size and amount is not None:
                if size.casefold() in sizes:  # as the service compares them ("a4" is A4)
                    self.add_error(f"print_size_{i}", f"The size {size} is listed twice (sizes ignore case).")
                sizes.add(size.casefold())
                prices.append(PriceIn(kind=ProductKind.PRINT.value, size=size, amount_minor=amount))
        if not prices and not self.errors:
            raise forms.ValidationError("Give at least one price.")
        data["prices"] = prices
        return data


class PayoutRequestForm(StudioForm):
    account = forms.TypedChoiceField(coerce=int, label="Wallet")

    def __init__(self, *args: Any, wallets: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("account", wallets)


class DestinationForm(StudioForm):
    member = forms.TypedChoiceField(coerce=int, label="Member")
    provider = forms.ChoiceField(choices=PROVIDER_CHOICES)
    destination = forms.CharField(
        max_length=200,
        help_text="Stripe: acct_…; PayPal: receiver e-mail; Flutterwave: bank code:account number; sandbox: any label.",
    )

    def __init__(self, *args: Any, members: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("member", members)


class AttendeesForm(StudioForm):
    """Register an event's attendees (`attendees_register`): one per line, `e-mail` or
    `e-mail, name` (a comma, semicolon or tab between, as pasted from a spreadsheet)."""

    lines = forms.CharField(
        label="Attendees",
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "ann@example.com, Ann Example"}),
        help_text=f"One per line: an e-mail address, then optionally a name. At most "
        f"{MAX_ATTENDEES_PER_REGISTRATION:,} at a time; someone already registered is updated.",
    )
    email_consent = forms.BooleanField(
        required=False,
        label="They agreed to receive this event's announcements by e-mail",
        help_text="Unticked, new attendees see announcements on their attendee page only; anyone already "
        "registered keeps the choice recorded before.",
    )

    def clean_lines(self) -> list[AttendeeIn]:
        attendees: list[AttendeeIn] = []
        problems: list[str] = []
        seen: set[str] = set()
        for number, raw in enumerate(str(self.cleaned_data["lines"]).splitlines(), start=1):
            if not raw.strip():
                continue
            parts = re.split(r"[,;\t]", raw, maxsplit=1)
            email, name = parts[0].strip().lower(), (parts[1].strip() if len(parts) > 1 else "")
            try:
                validate_email(email)
            except ValidationError:
                problems.append(f"Line {number}: “{email[:80]}” is not an e-mail address.")
                continue
            if len(email) > 254 or len(name) > 200:
                problems.append(f"Line {number}: too long (e-mail 254, name 200 characters at most).")
            elif name_problem := attendee_name_problem(name):
                problems.append(f"Line {number} (name): {name_problem}")
            elif email in seen:
                problems.append(f"Line {number}: {email} is listed twice.")
            else:
                seen.add(email)
                attendees.append(AttendeeIn(email=email, name=name))
        if len(attendees) > MAX_ATTENDEES_PER_REGISTRATION:
            problems.append(f"{len(attendees):,} attendees: at most {MAX_ATTENDEES_PER_REGISTRATION:,} at a time.")
        if problems:
            raise ValidationError(problems[:20] + ([f"… and {len(problems) - 20} more."] if len(problems) > 20 else []))
        if not attendees:
            raise ValidationError("List at least one e-mail address.")
        return attendees


class AttendeeLinkResetForm(StudioForm):
    """A button: the attendee is in the URL."""


class AnnouncementForm(StudioForm):
    event = forms.TypedChoiceField(coerce=int, label="Event", help_text="Sent to this event's subscribed attendees.")
    title = forms.CharField(max_length=ANNOUNCEMENT_TITLE_MAX_LENGTH)
    body = forms.CharField(max_length=ANNOUNCEMENT_BODY_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 6}))
    send_now = forms.BooleanField(required=False, label="Send it now (otherwise it stays a draft)")

    def __init__(self, *args: Any, events: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("event", events)


class SendForm(StudioForm):
    """A button: the announcement is in the URL."""


class AnnouncementEditForm(StudioForm):
    """Change a draft's event, title or body. Each field carries the value the page showed (a
    hidden initial), and only the fields changed from it are saved (`changed_fields`): a page
    left open in another tab saves what was changed there, never the stale values of the rest."""

    event = forms.TypedChoiceField(
        coerce=int, label="Event", help_text="Sent to this event's subscribed attendees.", show_hidden_initial=True
    )
    title = forms.CharField(max_length=ANNOUNCEMENT_TITLE_MAX_LENGTH, show_hidden_initial=True)
    body = forms.CharField(
        max_length=ANNOUNCEMENT_BODY_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 6}), show_hidden_initial=True
    )

    def __init__(self, *args: Any, events: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("event", events)

    @classmethod
    def for_announcement(cls, announcement: Announcement, *, events: list[tuple[int, str]]) -> AnnouncementEditForm:
        """An unbound form showing the draft as it is."""
        initial = {"event": announcement.event_id, "title": announcement.title, "body": announcement.body}
        return cls(initial=initial, events=events)

    def changed_fields(self) -> dict[str, Any]:
        """The cleaned event id, title and body changed on the page (None: kept), as
        `announcement_update` takes them."""
        names = {"event": "event_id", "title": "title", "body": "body"}
        return {arg: self.cleaned_data[name] if name in self.changed_data else None for name, arg in names.items()}


class DraftDeleteForm(StudioForm):
    """A button: the draft is in the URL."""


class StudioSettingsForm(StudioForm):
    name = forms.CharField(
        max_length=200,
        label="Studio name",
        help_text="Shown on your shop's pages and in the e-mails shoppers and attendees get.",
    )


class ApiKeyForm(StudioForm):
    name = forms.CharField(
        max_length=API_KEY_NAME_MAX_LENGTH,
        help_text="What will use it, e.g. “Website storefront” (up to 100 characters).",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def clean_name(self) -> str:
        """The rule of titles (`title_problem`): the keys list and the revoke page show the name,
        so no control character or text-direction override may make it read as another."""
        name = str(self.cleaned_data["name"])
        if problem := title_problem(name, max_length=API_KEY_NAME_MAX_LENGTH):
            raise forms.ValidationError(problem)
        return name


class ApiKeyRevokeForm(StudioForm):
    """A button: the key is in the URL."""


class MemberInviteForm(StudioForm):
    email = forms.EmailField(
        max_length=254,
        label="E-mail address",
        help_text=(
            "They get an e-mail inviting them to accept, with a link to choose a password if they have none yet."
        ),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(
        choices=Membership.Role.choices,
        initial=Membership.Role.PHOTOGRAPHER,
        help_text="Owners manage everything, members included; photographers upload; staff see sales and announce.",
    )


class MemberRoleForm(StudioForm):
    """One member's role (a small form per row of the members table; the member is in the URL)."""

    role = forms.ChoiceField(choices=Membership.Role.choices)


class MemberRemoveForm(StudioForm):
    """A button: the member is in the URL."""


class InvitationWithdrawForm(StudioForm):
    """A button: the pending invitation is in the URL."""


class InvitationRenewForm(StudioForm):
    """A button ("Send again"): the invitation is in the URL."""


class InvitationAnswerForm(StudioForm):
    """Accept or decline one's own pending invitation (a button; the studio is in the URL). An
    acceptance carries the role the page showed: it is granted only while still offered."""

    role = forms.CharField(max_length=32, required=False)


class StudioChoiceForm(StudioForm):
    studio = forms.TypedChoiceField(coerce=int)

    def __init__(self, *args: Any, studios: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._choices("studio", studios)


class PhotoWithdrawForm(StudioForm):
    """Withdraw a photo (`photo_withdraw`); the reason goes to the audit log."""

    reason = forms.CharField(
        max_length=WITHDRAWN_REASON_MAX_LENGTH,
        help_text='Why it is taken down, e.g. "the runner asked us to remove it" (kept in the audit log).',
    )


class _OrderLinesField(forms.TypedMultipleChoiceField):
    """Line ids: offered as `choices`, accepted among `accepted` (every charged line of the order),
    so the service, not the form, answers for an item refunded since the page was shown."""

    accepted: frozenset[str] = frozenset()

    def valid_value(self, value: Any) -> bool:
        return str(value) in self.accepted


class RefundForm(StudioForm):
    """Refund a paid sale, whole or some of its items (`checkout_refund_request`). `items`: the
    (line id, label) choices of the items not refunded yet: a box each when there are several,
    else the one item as a hidden field, so a post always names what its page showed; any of the
    order's charged lines (`order_lines`) is accepted, and the service refuses (409) an item
    refunded meanwhile, in another tab or by the API: a stale page is refused, never widened."""

    lines = _OrderLinesField(
        coerce=int,
        label="Items to refund",
        widget=forms.CheckboxSelectMultiple,
        help_text="Each item's amount goes back; refunding every item left gives back all that is left of the payment.",
        error_messages={
            "required": "Choose at least one item to refund.",
            "invalid_choice": "That is not an item of this order.",
        },
    )
    confirm = forms.BooleanField(
        label="Give the buyer their money back",
        help_text="The buyer's downloads of the refunded items stop working and the photographers' earnings "
        "from them are taken back from their wallets.",
    )
    restock_prints = forms.BooleanField(
        required=False,
        label="Put the prints back in stock",
        help_text="They have not been shipped: once the refund goes through, the refunded prints are for sale again.",
    )

    def __init__(
        self,
        *args: Any,
        offer_restock: bool = False,
        items: list[tuple[int, str]] | None = None,
        order_lines: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not offer_restock:
            del self.fields["restock_prints"]
        lines = self.fields["lines"]
        assert isinstance(lines, _OrderLinesField)
        lines.accepted = frozenset(str(line_id) for line_id in order_lines or [])
        lines.choices = items or []
        lines.initial = [line_id for line_id, _ in items or []]
        if len(items or []) <= 1:
            lines.widget = forms.MultipleHiddenInput()


class ShipForm(StudioForm):
    """Mark a sale's prints shipped (`checkout_mark_shipped`)."""

    carrier = forms.CharField(max_length=CARRIER_MAX_LENGTH, help_text="Who carries the parcel, e.g. DHL, La Poste.")
    tracking_reference = forms.CharField(
        max_length=TRACKING_REFERENCE_MAX_LENGTH,
        required=False,
        label="Tracking reference (optional)",
        help_text="Sent to the shopper with the shipping e-mail.",
    )
