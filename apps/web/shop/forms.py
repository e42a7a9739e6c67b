"""Input of the shop's forms (Django forms: parse and refuse; the views decide what happens)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from apps.commerce.models import Provider
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


class CheckoutForm(forms.Form):
    email = forms.EmailField(max_length=254, label="E-mail address")
    provider = forms.ChoiceField(label="Pay with")
    cart = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = offered_providers()
        provider = self.fields["provider"]
        assert isinstance(provider, forms.ChoiceField)
        provider.choices = choices
        if choices and not self.is_bound:
            self.initial.setdefault("provider", choices[0][0])


class OrderLookupForm(forms.Form):
    email = forms.EmailField(max_length=254, label="E-mail address")
