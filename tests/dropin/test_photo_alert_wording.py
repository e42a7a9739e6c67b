"""The words of the new-photo alert e-mail for one photo (the burst of several is in
test_photo_alerts.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from tests.dropin.helpers import an_event, enrolled_face
from tests.dropin.test_photo_alerts import _alert_timing, alert_of, alerts_on, new_photo, send_at  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_alert_about_one_photo_speaks_of_one_photo(tenant_a: Any) -> None:
    # given: Ann asked for alerts, and one new photo of her arrived
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    alerts_on(tenant_a.org, ann)
    new_photo(tenant_a.org, event, ["ann"])
    armed = alert_of(ann)
    assert armed is not None and armed.due_at is not None
    # when: the alert is sent
    assert send_at(armed.due_at).sent == 1
    # then: subject and body speak of one photo, "it", never "them"
    [message] = mail.outbox
    assert message.subject.startswith("A new photo of you from ")
    assert "A photo of you from " in message.body and "\nSee it: http://" in message.body
    assert "See them" not in message.body
