"""The e-mail telling someone they were made a member of a studio.

Someone without a password (a user the invitation created, or one created by an earlier
invitation who never chose one) gets a link to choose it: Django's password-reset token
(`default_token_generator`) for the studio's `password-reset-confirm` page, absolute on
DARKROOM_PUBLIC_BASE_URL. It works once (it is signed over the password hash, which choosing a
password changes) and for PASSWORD_RESET_TIMEOUT; adding the person again sends a fresh one.
Django's "Forgot your password?" mails only users with a usable password, so this is their way in.
Anyone else gets a note with the sign-in address.

Sent after the membership committed, outside any transaction (nothing to roll back once mailed,
and the link never sits in a row or a queue).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.tenancy.models import Membership, Organization, User


def public_url(path: str) -> str:
    return f"{str(settings.DARKROOM_PUBLIC_BASE_URL).rstrip('/')}{path}"


def set_password_url(user: User) -> str:
    """A one-time link for `user` to choose a password (the studio's password-reset page)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return public_url(reverse("studio:password-reset-confirm", kwargs={"uidb64": uidb64, "token": token}))


def invitation_send(*, studio: Organization, user: User, role: str, invited_by: User) -> bool:
    """E-mail `user` that they are now a `role` of `studio`; returns whether it carried a link to
    choose a password. Call it outside any transaction; raises whatever the mail backend raises."""
    needs_password = not user.has_usable_password()
    context = {
        "studio_name": studio.name,
        "role": Membership.Role(role).label.lower(),
        "invited_by": invited_by.get_full_name() or invited_by.get_username(),
        "username": user.get_username(),
        "set_password_url": set_password_url(user) if needs_password else None,
        "login_url": public_url(reverse("studio:login")),
        "timeout_hours": max(1, settings.PASSWORD_RESET_TIMEOUT // 3600),
    }
    subject = " ".join(render_to_string("studio/member_invitation_subject.txt", context).split())
    body = render_to_string("studio/member_invitation_email.txt", context)
    EmailMessage(
        subject=subject, body=body, from_email=str(settings.STUDIO_PASSWORD_RESET_FROM_EMAIL), to=[user.email]
    ).send(fail_silently=False)
    return needs_password
