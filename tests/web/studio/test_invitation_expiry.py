"""Expired invitations on the pages: the invitee no longer sees one and cannot accept it (a clear
refusal, nothing written); the studio's members page shows it as expired, with "Send again",
which renews it and e-mails it again; the e-mail says until when an invitation is valid."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django.core import mail
from django.db.models import F
from django.utils import timezone

from apps.tenancy.context import tenant_context
from apps.tenancy.models import MembershipInvitation, User
from apps.tenancy.services import member_invite
from tests.tenancy.helpers import audits_of, pending_of, roles_of
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_user, signed_in, text

pytestmark = pytest.mark.django_db

MEMBERS = "/studio/members/"
INVITATIONS = "/studio/invitations/"
# The configured validity (the default, 14 days, unless the environment sets another).
TTL = dt.timedelta(days=settings.STUDIO_INVITATION_TTL_DAYS)


def invited(studio: StudioPeople, person: User, role: str) -> MembershipInvitation:
    result = member_invite(tenant=studio.org, email=person.email, role=role, actor=studio.owner)
    assert result.invitation is not None
    return result.invitation


def expire(invitation: MembershipInvitation, by: dt.timedelta = dt.timedelta(seconds=1)) -> None:
    """As if sent TTL + `by` ago."""
    with tenant_context(invitation.tenant_id):
        MembershipInvitation.objects.filter(pk=invitation.pk).update(
            created_at=F("created_at") - TTL - by, expires_at=F("expires_at") - TTL - by
        )


def expires_at(invitation: MembershipInvitation) -> dt.datetime:
    with tenant_context(invitation.tenant_id):
        return MembershipInvitation.objects.get(pk=invitation.pk).expires_at


def row_html(page_html: str, invitation: MembershipInvitation) -> str:
    found = re.search(rf'<tr id="invitation-{invitation.pk}">.*?</tr>', page_html, re.S)
    assert found, f"no row of invitation {invitation.pk}"
    return found.group(0)


def test_an_expired_invitation_is_not_offered_and_a_stale_accept_is_refused(studio: StudioPeople) -> None:
    # given: a person in no studio, invited as owner, with their invitations page open
    person = new_user()
    invitation = invited(studio, person, "owner")
    client = signed_in(person)
    page = client.get(INVITATIONS)
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    nonce = form_nonce_on(page, accept_url)
    # when: the invitation expires, and they press Accept on the page they had open
    expire(invitation)
    refused = client.post(accept_url, {"nonce": nonce, "role": "owner"})
    # then: refused with a page saying it expired and what to do; nothing granted or recorded
    assert refused.status_code == 410
    assert "Invitation expired" in text(refused) and "invite you again" in text(refused)
    assert person.pk not in roles_of(studio.org) and audits_of(studio.org, "membership.accept") == []
    assert pending_of(studio.org) == {person.pk: "owner"}
    # and: their page no longer offers it, and the studio's pages do not lead them to it
    assert "no pending invitations" in text(client.get(INVITATIONS))
    assert client.get("/studio/").status_code == 403


def test_the_members_page_shows_an_expired_invitation_and_sends_it_again(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: one pending invitation and one expired
    owner = signed_in(studio.owner)
    pending = invited(studio, new_user(), "staff")
    person = other_studio.owner
    stale = invited(studio, person, "photographer")
    expire(stale, by=dt.timedelta(days=2))
    mail.outbox.clear()
    # then: the page tells them apart; only the expired one offers "Send again"
    page = owner.get(MEMBERS)
    html = text(page)
    assert "Expired" in row_html(html, stale) and "Send again" in row_html(html, stale)
    assert "Expired" not in row_html(html, pending) and "Send again" not in row_html(html, pending)
    assert "Valid until" in row_html(html, pending)
    # when: the owner sends the expired one again, and the form is sent twice
    send_again = f"/studio/members/invitations/{stale.pk}/renew"
    nonce = form_nonce_on(page, send_again)
    before = timezone.now()
    first = owner.post(send_again, {"nonce": nonce, "for_studio": studio.org.pk})
    second = owner.post(send_again, {"nonce": nonce, "for_studio": studio.org.pk})
    # then: renewed once, for a full TTL, with one new e-mail; the row is pending again
    assert first.status_code == second.status_code == 303 and first["Location"] == MEMBERS
    assert expires_at(stale) >= before + TTL
    assert len(audits_of(studio.org, "membership.invite")) == 3
    [message] = mail.outbox
    assert message.to == [person.email] and "photographer" in message.body
    html = text(owner.get(MEMBERS))
    assert "Expired" not in row_html(html, stale) and "sent again" in html
    # and: the person can accept it now
    page = signed_in(person).get(INVITATIONS)
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    accepted = signed_in(person).post(accept_url, {"nonce": form_nonce_on(page, accept_url), "role": "photographer"})
    assert accepted.status_code == 303 and roles_of(studio.org)[person.pk] == "photographer"


def test_sending_again_an_invitation_withdrawn_meanwhile_is_a_404_and_writes_nothing(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    stale = invited(studio, new_user(), "staff")
    expire(stale)
    page = owner.get(MEMBERS)
    send_again = f"/studio/members/invitations/{stale.pk}/renew"
    nonce = form_nonce_on(page, send_again)
    with tenant_context(studio.org.pk):
        MembershipInvitation.objects.filter(pk=stale.pk).delete()
    mail.outbox.clear()
    refused = owner.post(send_again, {"nonce": nonce, "for_studio": studio.org.pk})
    assert refused.status_code == 404 and pending_of(studio.org) == {} and mail.outbox == []
    assert len(audits_of(studio.org, "membership.invite")) == 1


def test_only_owners_send_an_invitation_again(studio: StudioPeople) -> None:
    stale = invited(studio, new_user(), "staff")
    expire(stale)
    before = expires_at(stale)
    refused = signed_in(studio.staff).post(
        f"/studio/members/invitations/{stale.pk}/renew", {"nonce": "s" * 24, "for_studio": studio.org.pk}
    )
    assert refused.status_code == 403 and expires_at(stale) == before


def test_the_email_says_until_when_the_invitation_is_valid(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get(MEMBERS), MEMBERS)
    assert owner.post(MEMBERS, {"nonce": nonce, "email": "dora@example.com", "role": "staff"}).status_code == 303
    [message] = mail.outbox
    with tenant_context(studio.org.pk):
        invitation = MembershipInvitation.objects.get(email="dora@example.com")
    until = timezone.localtime(invitation.expires_at)
    assert f"valid until {until:%-d %B %Y, %H:%M} UTC" in message.body, message.body
