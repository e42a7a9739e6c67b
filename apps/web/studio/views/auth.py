"""Signing in and out, resetting a forgotten password (Django's auth views with the studio's
templates) and picking a studio."""

from __future__ import annotations

import unicodedata
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.core.client_address import rate_limit_address
from apps.core.text import is_storable_text
from apps.ops.ratelimit import setting_rate_reset, setting_rate_wait
from apps.tenancy.middleware import SESSION_TENANT_KEY
from apps.tenancy.models import User
from apps.tenancy.password_reset import password_reset_request
from apps.tenancy.selectors import invitations_of_user, memberships_of_user
from apps.web.shop.limits import wait_seconds
from apps.web.studio.access import forbidden
from apps.web.studio.forms import StudioChoiceForm
from apps.web.studio.sign_in import MAX_LENGTH, StudioAuthenticationForm, account_username

# The username of the account whose password was just set, for the page after (this browser's).
SESSION_RESET_USERNAME = "darkroom_reset_username"


def _username_key(request: HttpRequest) -> str:
    """The sign-in budget's key for the username posted: NFKC-normalised as Django's sign-in form
    normalises it before authenticating, an e-mail address replaced by the username of its one
    account (`account_username`), and case-folded, so every spelling that reaches one account (a
    fullwidth first letter folds to the plain one; its address, in any case) spends one budget."""
    typed = unicodedata.normalize("NFKC", str(request.POST.get("username", ""))).strip()[:MAX_LENGTH]
    return f"web:login:u:{account_username(typed).casefold()}"


def wait_text(seconds: int) -> str:
    """How long a throttled person waits, as the page says it ("12 seconds", "4 minutes"); the
    same wait the response's Retry-After gives, rounded up to whole minutes past a minute."""
    if seconds < 60:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


class LoginView(auth_views.LoginView):
    """Django's sign-in by username or e-mail address (`StudioAuthenticationForm`), with attempts
    limited per client address and per account. `?username=` fills the username in (the link of
    the page after choosing a password); nothing else is taken from the address.

    * Per client address (`STUDIO_LOGIN_ADDRESS_RATE`): every attempt counts, right or wrong, so
      one address cannot try passwords across many usernames.
    * Per username (`STUDIO_LOGIN_RATE`): only failed sign-ins count. An attempt takes its place
      in the username's budget before its password is checked (so guesses sent in parallel
      cannot overrun it), and a successful sign-in clears the username's count. Signing in often
      therefore never locks anyone out, while `STUDIO_LOGIN_RATE` wrong passwords in a row
      refuse the next attempt, right password or not, until the window slides past them.

    Over either limit: a 429 page with Retry-After and no password check; the address is
    checked first, so an attempt it refuses does not count against the username. An
    unreachable Redis lets attempts through (logged and counted), as for every limiter here."""

    template_name = "studio/login.html"
    authentication_form = StudioAuthenticationForm
    redirect_authenticated_user = True
    next_page = "studio:overview"

    def get_initial(self) -> dict[str, Any]:
        username = self.request.GET.get("username", "") if self.request.method == "GET" else ""
        if not username or not is_storable_text(username):
            return {}
        return {"username": username[:MAX_LENGTH]}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = setting_rate_wait(
            (f"web:login:a:{rate_limit_address(request)}", "STUDIO_LOGIN_ADDRESS_RATE")
        ) or setting_rate_wait((_username_key(request), "STUDIO_LOGIN_RATE"))
        if wait:
            response = render(
                request,
                self.template_name,
                {
                    "form": self.get_form(),
                    "throttled": True,
                    "wait_text": wait_text(wait),
                    "next": self.get_redirect_url(),
                    "studio": None,
                },
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        """The password was right: this attempt, and the account's failed ones, stop counting."""
        setting_rate_reset(_username_key(self.request), "STUDIO_LOGIN_RATE")
        self.request.session.pop(SESSION_RESET_USERNAME, None)
        return super().form_valid(form)


class LogoutView(auth_views.LogoutView):
    next_page = "studio:login"


class PasswordResetView(auth_views.PasswordResetView):
    """Ask for a reset link by e-mail address. The answer is the same page whether or not the
    address has an account, and the request does the same work either way: it only records the
    request (`password_reset_request`, one outbox message in one transaction), and a worker sends
    the e-mail (apps/tenancy/password_reset.py), so neither the answer nor how long it takes
    tells who has an account. Only active accounts with a usable password get a link, made when
    the e-mail is built on DARKROOM_PUBLIC_BASE_URL and signed over the password hash and last
    login, so it stops working once used or when the password changes, and after
    PASSWORD_RESET_TIMEOUT.

    Requests are limited per e-mail address and per client address
    (`STUDIO_PASSWORD_RESET_EMAIL_RATE`, `STUDIO_PASSWORD_RESET_ADDRESS_RATE`): over either, a
    429 page with Retry-After, and nothing is recorded."""

    template_name = "studio/password_reset.html"
    success_url = reverse_lazy("studio:password-reset-sent")

    def form_valid(self, form: Any) -> HttpResponse:
        email = str(form.cleaned_data["email"]).strip().lower()[:254]
        wait = wait_seconds(
            (f"reset:e:{email}", "STUDIO_PASSWORD_RESET_EMAIL_RATE"),
            (f"reset:a:{rate_limit_address(self.request)}", "STUDIO_PASSWORD_RESET_ADDRESS_RATE"),
        )
        if wait:
            response = render(
                self.request,
                self.template_name,
                {"form": form, "throttled": True, "wait_text": wait_text(wait), "studio": None},
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        password_reset_request(email=str(form.cleaned_data["email"]))
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetSentView(auth_views.PasswordResetDoneView):
    template_name = "studio/password_reset_sent.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "timeout_hours": settings.PASSWORD_RESET_TIMEOUT // 3600}


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The link's page: a new password (Django's validators), then the link is spent."""

    template_name = "studio/password_reset_confirm.html"
    success_url = reverse_lazy("studio:password-reset-done")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # An invited person without a password yet chooses their first one, not a "new" one.
        user = getattr(self, "user", None)
        return {
            **super().get_context_data(**kwargs),
            "first_password": user is not None and not user.has_usable_password(),
        }

    def form_valid(self, form: Any) -> HttpResponse:
        # The link proved the account is this browser's: the page after tells its username.
        response = super().form_valid(form)
        self.request.session[SESSION_RESET_USERNAME] = form.user.get_username()
        return response


class PasswordResetDoneView(auth_views.PasswordResetCompleteView):
    """The page after choosing a password: it is set, the account's username (which only the
    invitation e-mail gave an invited person) and a sign-in link that fills it in."""

    template_name = "studio/password_reset_done.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "username": self.request.session.get(SESSION_RESET_USERNAME),
        }


def _safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}):
        return value
    return reverse("studio:overview")


@never_cache
@require_http_methods(["GET", "POST"])
def choose(request: HttpRequest) -> HttpResponse:
    """Which studio to work in (for people in several); kept in the session. Pending invitations
    are not studios to pick: the page points to them (and is them, for someone in no studio yet)."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("studio:login"))
    assert isinstance(user, User)
    memberships = memberships_of_user(user=user)
    invitations = invitations_of_user(user=user)
    if not memberships:
        if invitations:
            return HttpResponseRedirect(reverse("studio:invitations"))
        return forbidden(request, None, "Your account is not a member of any studio.")
    studios = [(m.tenant_id, f"{m.tenant.name} ({m.role})") for m in memberships]
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    status = 200
    if request.method == "POST":
        form = StudioChoiceForm(request.POST, studios=studios)
        if form.is_valid():
            request.session[SESSION_TENANT_KEY] = form.cleaned_data["studio"]
            return HttpResponseRedirect(next_url, status=303)
        status = 400
    else:
        form = StudioChoiceForm(initial={"studio": request.session.get(SESSION_TENANT_KEY)}, studios=studios)
    return render(
        request,
        "studio/choose.html",
        {"form": form, "memberships": memberships, "invitations": invitations, "next": next_url, "studio": None},
        status=status,
    )
