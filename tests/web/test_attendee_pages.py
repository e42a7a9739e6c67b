"""An attendee's pages as they read them after following an announcement's link (QA walkthrough):
their notifications lead to the event's photos, and the drop-in page promises no photos shown
before a selfie is registered."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.notifications.services import AttendeeIn, attendees_register
from apps.tenancy.context import tenant_context
from tests.dropin.helpers import enrolled_face
from tests.web.studio.conftest import new_event

pytestmark = pytest.mark.django_db


def an_attendee(org: Any, event: Any, email: str = "ann@example.test") -> Attendee:
    with tenant_context(org.pk):
        attendees_register(
            tenant=org, event_id=event.pk, attendees=[AttendeeIn(email=email, email_consent=True)], actor_label="test"
        )
        return Attendee.objects.get(tenant=org, event=event, email=email)


def test_the_notifications_page_links_to_the_events_photos(tenant_a: Any) -> None:
    # given: an attendee of an event, told by an announcement that its photos are online
    event = new_event(tenant_a.org, title="City Marathon", slug="city-marathon")
    ann = an_attendee(tenant_a.org, event)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)
    # when: they open their page
    page = Client().get(f"/attendee/{token}/").content.decode()
    # then: it leads to the event's gallery in the studio's shop, which opens
    gallery = f"/s/{tenant_a.org.slug}/city-marathon/"
    assert f'href="{gallery}"' in page and "See the photos of City Marathon" in page
    assert Client().get(gallery).status_code == 200


def test_before_a_selfie_the_drop_in_page_does_not_say_new_photos_are_shown(tenant_a: Any) -> None:
    # given: an attendee who has not registered a selfie
    event = new_event(tenant_a.org, title="City Marathon")
    ann = an_attendee(tenant_a.org, event)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)
    # when: they open the drop-in page
    page = Client().get(f"/attendee/{token}/drop-in").content.decode()
    # then: it says new photos of them are shown once a selfie is registered (none are before)
    assert "New photos of you are shown in your notifications." not in page
    assert "Once your selfie is registered, new photos of you are shown in your notifications." in page


@pytest.mark.django_db(transaction=True)  # the face is enrolled outside any transaction
def test_with_a_selfie_the_drop_in_page_turns_e_mail_alerts_on(tenant_a: Any) -> None:
    # given: an attendee whose face is registered, without e-mail alerts
    event = new_event(tenant_a.org, title="City Marathon")
    face = enrolled_face(tenant_a.org, event, "ann")
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=face.attendee_id)
    # when: they open the drop-in page
    page = Client().get(f"/attendee/{token}/drop-in").content.decode()
    # then: the page says where new photos of them are shown and offers the e-mails too
    assert "New photos of you are shown in your notifications." in page
    assert "Also e-mail me at ann@example.com" in page
