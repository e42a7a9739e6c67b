"""The members page after an invited account changed its e-mail address: the invitation's row still
shows the address the owner typed (the new one is not the studio's to see), "Send again" e-mails
the account's current address only, and the account, not whoever has the old address, accepts it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django.core import mail
from django.db.models import F

from apps.tenancy.context import tenant_context
from apps.tenancy.models import MembershipInvitation, User
from apps.tenancy.services import member_invite
from tests.tenancy.helpers import audits_of, pending_of, roles_of
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_user, signed_in, text

pytestmark = pytest.mark.django_db

MEMBERS = "/studio/members/"
INVITATIONS = "/studio/invitations/"
TTL = dt.timedelta(days=settings.STUDIO_INVITATION_TTL_DAYS)
OLD, NEW = "ann.old@example.test", "ann.new@example.test"


def row_html(page_html: str, invitation: MembershipInvitation) -> str:
    found = re.search(rf'<tr id="invitation-{invitation.pk}">.*?</tr>', page_html, re.S)
    assert found, f"no row of invitation {invitation.pk}"
    return found.group(0)


def test_send_again_goes_to_the_accounts_current_address_and_that_account_accepts(studio: StudioPeople) -> None:
    # given: Ann invited at her old address; she then got another one (as the admin's user form
    # gives it), and the invitation expired
    ann = new_user()
    ann.email = OLD
    ann.save(update_fields=["email"])
    result = member_invite(tenant=studio.org, email=OLD, role="photographer", actor=studio.owner)
    assert result.invitation is not None
    invitation = result.invitation
    ann.email = NEW
    ann.save(update_fields=["email"])
    with tenant_context(studio.org.pk):
        MembershipInvitation.objects.filter(pk=invitation.pk).update(expires_at=F("expires_at") - TTL - TTL)
    owner = signed_in(studio.owner)
    # then: the members page shows the address the owner typed, not the account's new one
    page = owner.get(MEMBERS)
    row = row_html(text(page), invitation)
    assert OLD in row and NEW not in row and "Send again" in row
    # when: the owner sends it again
    send_again = f"/studio/members/invitations/{invitation.pk}/renew"
    mail.outbox.clear()
    users_before = User.objects.count()
    sent = owner.post(send_again, {"nonce": form_nonce_on(page, send_again), "for_studio": studio.org.pk})
    # then: one e-mail, to Ann's current address; the page says so; no account for the old address
    assert sent.status_code == 303, text(sent)
    assert [m.to for m in mail.outbox] == [[NEW]] and "photographer" in mail.outbox[0].body
    html = text(owner.get(MEMBERS))
    assert f"The invitation of {OLD} was sent again" in html and NEW not in html
    assert User.objects.count() == users_before and pending_of(studio.org) == {ann.pk: "photographer"}
    assert audits_of(studio.org, "membership.invite")[-1].data["sent_to"] == NEW
    # and: Ann accepts it on her invitations page
    client = signed_in(ann)
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    accepted = client.post(
        accept_url, {"nonce": form_nonce_on(client.get(INVITATIONS), accept_url), "role": "photographer"}
    )
    assert accepted.status_code == 303 and roles_of(studio.org)[ann.pk] == "photographer"
