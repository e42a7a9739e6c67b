"""Input of the shop's forms (Django forms: parse and refuse; the views decide what happens)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from apps.commerce.countries import COUNTRIES, NO_POSTAL_CODE
from apps.commerce.models import (
    SHIPPING_CITY_MAX_LENGTH,
    SHIPPING_LINE_MAX_LENGTH,
    SHIPPING_NAME_MAX_LENGTH,
    SHIPPING_PHONE_MAX_LENGTH,
    SHIPPING_POSTAL_CODE_MAX_LENGTH,
    SHIPPING_REGION_MAX_LENGTH,
    Provider,
)
from apps.web.shop.selectors import MAX_ID


def offered_providers() -> list[tuple[str, str]]:
    """The payment providers the checkout form offers, as (value, label).

    `SHOP_PAYMENT_PROVIDERS` (a list of names) chooses them; by default the sandbox alone where it
    is enabled (local development: the real providers' local credentials are placeholders) and
    the real providers elsewhere (production turns the sandbox off). The sandbox is never offered
    while SANDBOX_ENABLED is off, since `checkout_create` refuses it then.
    """
    configured = settings.SHOP_PAYMENT_PROVIDERS
    if configured is None:
        configured = [Provider.SANDBOX] if settings.SANDBOX_ENABLED else [p for p in Provider if p != Provider.SANDBOX]
    names = [str(name) for name in configured]
    return [
        (p.value, p.label) for p in Provider if p.value in names and (p != Provider.SANDBOX or settings.SANDBOX_ENABLED)
    ]


class AccessCodeForm(forms.Form):
    code = forms.CharField(max_length=200, strip=False, label="Access code")
    next = forms.CharField(max_length=500, required=False)


class AddToCartForm(forms.Form):
    product = forms.IntegerField(min_value=1, max_value=MAX_ID)
    quantity = forms.IntegerField(min_value=1, required=False)


class CartUpdateForm(forms.Form):
    product = forms.IntegerField(min_value=1, max_value=MAX_ID)
    quantity = forms.IntegerField(min_value=0)


class CartRemoveForm(forms.Form):
    product = forms.IntegerField(min_value=1, max_value=MAX_ID)


# The checkout form's address fields (`shipping_<field>`), each the `ShippingIn` field it fills.
SHIPPING_FORM_FIELDS: dict[str, str] = {
    "shipping_name": "name",
    "shipping_line1": "line1",
    "shipping_line2": "line2",
    "shipping_city": "city",
    "shipping_postal_code": "postal_code",
    "shipping_region": "region",
    "shipping_country": "country",
    "shipping_phone": "phone",
}
# The postal code too, except in the countries that have none: the service says which.
_SHIPPING_REQUIRED = ("shipping_name", "shipping_line1", "shipping_city", "shipping_country")


class CheckoutForm(forms.Form):
    """The cart's checkout form. With `needs_shipping` (the cart has prints) the address fields
    are required; without, they are ignored (the view passes no address to the service)."""

    email = forms.EmailField(max_length=254, label="E-mail address")
    provider = forms.ChoiceField(label="Pay with")
    cart = forms.CharField(max_length=64, widget=forms.HiddenInput)
    shipping_name = forms.CharField(max_length=SHIPPING_NAME_MAX_LENGTH, required=False, label="Full name")
    shipping_line1 = forms.CharField(max_length=SHIPPING_LINE_MAX_LENGTH, required=False, label="Address")
    shipping_line2 = forms.CharField(
        max_length=SHIPPING_LINE_MAX_LENGTH, required=False, label="Address line 2 (optional)"
    )
    shipping_city = forms.CharField(max_length=SHIPPING_CITY_MAX_LENGTH, required=False, label="City")
    shipping_postal_code = forms.CharField(
        max_length=SHIPPING_POSTAL_CODE_MAX_LENGTH, required=False, label="Postal code (if your country has them)"
    )
    shipping_region = forms.CharField(
        max_length=SHIPPING_REGION_MAX_LENGTH,
        required=False,
        label="State, province or region (required in the US, Canada and Australia)",
    )
    shipping_country = forms.ChoiceField(choices=[("", "Choose a country"), *COUNTRIES], required=False)
    shipping_phone = forms.CharField(
        max_length=SHIPPING_PHONE_MAX_LENGTH, required=False, label="Phone, for the carrier (optional)"
    )

    def __init__(self, *args: Any, needs_shipping: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs_shipping = needs_shipping
        if needs_shipping:
            for name in _SHIPPING_REQUIRED:
                self.fields[name].required = True
        choices = offered_providers()
        provider = self.fields["provider"]
        assert isinstance(provider, forms.ChoiceField)
        provider.choices = choices
        if choices and not self.is_bound:
            self.initial.setdefault("provider", choices[0][0])

    def clean(self) -> dict[str, Any]:
        """The postal code is required too, unless the chosen country has none (NO_POSTAL_CODE);
        marked on its field with the other missing ones, before the service sees the address."""
        cleaned = super().clean() or {}
        country = str(cleaned.get("shipping_country") or "")
        if self.needs_shipping and not cleaned.get("shipping_postal_code") and country not in NO_POSTAL_CODE:
            self.add_error("shipping_postal_code", forms.ValidationError("This field is required.", code="required"))
        return cleaned

    def shipping_values(self) -> dict[str, str] | None:
        """The address for `ShippingIn` (cleaned form only); None when the cart has no prints."""
        if not self.needs_shipping:
            return None
        return {field: str(self.cleaned_data.get(name) or "") for name, field in SHIPPING_FORM_FIELDS.items()}


class OrderLookupForm(forms.Form):
    email = forms.EmailField(max_length=254, label="E-mail address")
