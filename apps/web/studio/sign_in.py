"""Which account a studio sign-in names: a username, or an e-mail address.

People are invited by e-mail address, and their username is made from it ("maria.lens",
"maria.lens2"), so the studio's sign-in also takes the address, whatever its case (matched as the
invitations match it: the app keeps the local part as typed and the domain in lower case). A
username comes first: a typed value that is some account's username is that account, even if it
looks like an address. An address names an account only if exactly one account has it; one that
two accounts share (possible for addresses differing only in case, made before the admin and
the invitations matched them whatever their case) signs into neither, with the words and the cost
of a wrong password: the value is passed on as it was typed, which no account has as username, so
Django's backend hashes the password once to spend the time a real check takes.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.views.decorators.debug import sensitive_variables

from apps.core.text import is_storable_text
from apps.tenancy.models import User

# The longest value the sign-in form takes: an e-mail address (a username is at most 150).
MAX_LENGTH = 254


def account_username(typed: str) -> str:
    """The username to authenticate for `typed` (as the sign-in form cleaned it): `typed` itself,
    unless it is not a username and is the e-mail address of exactly one account, in any case."""
    if "@" not in typed or len(typed) > MAX_LENGTH or not is_storable_text(typed):
        return typed
    if User.objects.filter(username=typed).exists():
        return typed
    found = list(User.objects.filter(email__iexact=typed).values_list("username", flat=True)[:2])
    return found[0] if len(found) == 1 else typed


class StudioAuthenticationForm(AuthenticationForm):
    """Django's sign-in form, taking a username or the account's e-mail address."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.label = "Username or e-mail address"
        field.max_length = MAX_LENGTH  # type: ignore[attr-defined]
        field.widget.attrs.update({"maxlength": MAX_LENGTH, "autocomplete": "username"})

    @sensitive_variables("password")
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            self.user_cache = authenticate(self.request, username=account_username(username), password=password)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data
