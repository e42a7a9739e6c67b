"""Replacing an attendee's signed link, and the e-mail that brings them the new one.

The link is the attendee's credential (`apps.notifications.selectors`), and a forwarded e-mail
hands it on. Replacing it adds 1 to `Attendee.link_generation`, which retires every earlier link
for everything but unsubscribing.

* `attendee_link_replace`, the attendee's own "send me a new one" (their inbox page): bumps the
  generation only from the one their request's link carries (`UPDATE ... SET link_generation =
  link_generation + 1 WHERE ... AND link_generation = <the link's>`, so two clicks bump once)
  and, in the same transaction, writes one `attendee.link_replaced` outbox message. Its consumer
  (`notifications.send_new_link`, tasks/notifications.py) calls `attendee_link_email_send`,
  which e-mails the link of the generation current when the e-mail is built (a later
  replacement's, if there was one) to the attendee's own address, once per message
  (`apps.outbox.mail_once.send_once`). It goes whatever their announcement consent: they asked
  for it. Lost messages are sent again by the lost-message sweep (flow `attendee_link_emails`).
* `attendee_link_reset`, the studio's (API and dashboard): bumps the generation in the caller's
  transaction, audited; no e-mail (the studio hands the new link on, as it does the first).
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string

from apps.core.mail import mail_message_id
from apps.notifications.models import Attendee
from apps.notifications.photo_alerts import AttendeeNotFound
from apps.notifications.selectors import attendee_link
from apps.outbox.mail_once import send_once
from apps.outbox.services import outbox_publish
from apps.tenancy.context import tenant_context
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.notifications")

TOPIC_LINK_REPLACED = "attendee.link_replaced"
LINK_REPLACED_CONSUMER = "notifications.send_new_link"
AUDIT_ACTION = "attendee.link_replace"

# The "a new link is on its way" page's note (masked address, event, studio): signed so nobody
# can make the page say anything else; not a credential. Good for a day.
LINK_SENT_SALT = "darkroom.notifications.attendee.link-sent"
LINK_SENT_MAX_AGE_SECONDS = 86_400


@transaction.atomic(durable=True)
def attendee_link_replace(*, tenant_id: int, attendee_id: int, generation: int) -> bool:
    """The attendee replaces their link of `generation` (their request's): the generation moves
    to `generation + 1` and one `attendee.link_replaced` message (the e-mail with the new link)
    commits with it; audited. Returns False, writing nothing, when the link was no longer of
    `generation` (another request replaced it first: two clicks bump once).

    Outermost transaction, in the attendee's tenant context.
    """
    bumped = Attendee.objects.filter(tenant_id=tenant_id, pk=attendee_id, link_generation=generation).update(
        link_generation=F("link_generation") + 1
    )
    if not bumped:
        return False
    outbox_publish(
        topic=TOPIC_LINK_REPLACED,
        tenant_id=tenant_id,
        aggregate_type="attendee",
        aggregate_id=attendee_id,
        payload={"tenant_id": tenant_id, "attendee_id": attendee_id},
    )
    audit_record(
        action=AUDIT_ACTION,
        tenant_id=tenant_id,
        actor_label="attendee (signed link)",
        target_type="attendee",
        target_id=str(attendee_id),
        data={"generation": generation + 1, "emailed": True},
    )
    return True


@transaction.atomic
def attendee_link_reset(*, tenant_id: int, event_id: int, attendee_id: int, actor_label: str) -> Attendee:
    """The studio replaces the link of an attendee of its event: the generation moves on by one,
    audited; no e-mail. Returns the attendee as it now is (its links are the new ones).

    Joins the caller's transaction (the API's idempotency transaction, the dashboard's
    `submit_once`) or opens one, in the studio's tenant context. Raises AttendeeNotFound when
    the studio's event has no such attendee (nothing is written).
    """
    mine = Attendee.objects.filter(tenant_id=tenant_id, event_id=event_id, pk=attendee_id)
    if not mine.update(link_generation=F("link_generation") + 1):
        raise AttendeeNotFound(f"Event {event_id} of this studio has no attendee {attendee_id}.")
    attendee = mine.select_related("event", "tenant").get()
    audit_record(
        action=AUDIT_ACTION,
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="attendee",
        target_id=str(attendee_id),
        data={"generation": attendee.link_generation, "emailed": False, "event_id": event_id},
    )
    return attendee


def attendee_link_email_send(*, message_id: uuid.UUID | str, tenant_id: int, attendee_id: int) -> bool:
    """Send the e-mail an `attendee.link_replaced` message asks for, once: the attendee's page
    links of the generation current now, to their own address. Returns True if this call sent it.

    An attendee gone by then gets nothing; the message counts as handled either way (its inbox
    row is recorded, so the lost-message sweep leaves it alone). Runs outside any transaction
    (TransactionManagementError otherwise). Raises MailBusy while another sender's claim is
    live, and whatever the mail backend raises (the claim is then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    sent: list[bool] = []

    def send() -> None:
        with tenant_context(tenant_id):
            attendee = Attendee.objects.select_related("event", "tenant").filter(pk=attendee_id).first()
        if attendee is None:
            logger.info("new attendee link not sent: attendee gone", extra={"message_id": str(message_uuid)})
            return
        EmailMessage(
            subject=" ".join(render_to_string("attendee/link_replaced_subject.txt", _context(attendee)).split()),
            body=render_to_string("attendee/link_replaced_email.txt", _context(attendee)),
            from_email=settings.ANNOUNCEMENT_FROM_EMAIL,
            to=[attendee.email],
            headers={"Message-ID": mail_message_id(f"attendee-link.{message_uuid}")},
        ).send(fail_silently=False)
        sent.append(True)

    if not send_once(consumer=LINK_REPLACED_CONSUMER, message_id=message_uuid, send=send):
        return False
    if sent:
        logger.info("new attendee link sent", extra={"message_id": str(message_uuid), "attendee_id": attendee_id})
    return bool(sent)


def _context(attendee: Attendee) -> dict[str, str]:
    def link(page: str) -> str:
        return attendee_link(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, generation=attendee.link_generation, page=page
        )

    return {
        "name": attendee.name,
        "event_title": attendee.event.title,
        "studio_name": attendee.tenant.name,
        "inbox_url": link("inbox"),
        "dropin_url": link("dropin"),
    }


def masked_email(email: str) -> str:
    """`j***@example.com`: enough for the attendee to recognise their address, not to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def link_sent_note(attendee: Attendee) -> str:
    """The signed note the "new link sent" page shows: the masked address, event and studio."""
    note = {"e": masked_email(attendee.email), "v": attendee.event.title, "s": attendee.tenant.name}
    return signing.dumps(note, salt=LINK_SENT_SALT, compress=True)


def link_sent_note_read(note: str) -> dict[str, str] | None:
    """What `link_sent_note` signed, or None (tampered, malformed or older than a day)."""
    try:
        data = signing.loads(note, salt=LINK_SENT_SALT, max_age=LINK_SENT_MAX_AGE_SECONDS)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("e", "v", "s")):
        return None
    return {"email": data["e"], "event_title": data["v"], "studio_name": data["s"]}
