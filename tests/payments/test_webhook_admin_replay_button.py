"""A webhook event's own admin page replays it (README runbook "Webhook event failed").

Found walking the admin as an operator: a failed event's page showed its error and traceback but
no way to replay it; replaying was only the list's action (select the row, pick the action,
press Go). The page now has a "Replay this event" button for an event that can be replayed (not
one an operator resolved): it posts (CSRF-checked) to the list action itself, so the replay, its
audit row, its message and its permission (platform superusers) are the list action's.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog, User
from tests.commerce.helpers import pending_topics
from tests.factories.tenancy import UserFactory
from tests.payments.test_webhook_resolution import (
    a_processed_payment,
    a_session_mismatch,
    event_of,
    resolve,
    superuser_client,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

FORM = re.compile(r'<form method="post" action="(?P<action>[^"]+)"[^>]*>(?P<body>.*?)</form>', re.S)


def page_of(client: Client, event: Any) -> str:
    response = client.get(f"/admin/payments/webhookevent/{event.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def replay_url(page: str) -> str | None:
    """Where the page's "Replay this event" button posts (its form carries the CSRF token)."""
    for form in FORM.finditer(page):
        if ">Replay this event</button>" in form["body"]:
            assert 'name="csrfmiddlewaretoken"' in form["body"]
            return form["action"]
    return None


def replays() -> list[AuditLog]:
    with system_context("test"):
        return list(AuditLog.objects.filter(action="webhook_event.replay").order_by("pk"))


def test_a_failed_events_page_replays_it_once_audited(tenant_a, shop):
    # given: an event that failed for good, and a platform superuser on its page
    event, _ = a_session_mismatch(tenant_a, shop)
    client, admin_user = superuser_client()
    url = replay_url(page_of(client, event))
    assert url is not None, "the failed event's page has no replay button"
    # when: they press the button
    response = client.post(url, follow=True)
    # then: back on the event's page, told what happened
    assert response.redirect_chain[-1][0] == f"/admin/payments/webhookevent/{event.pk}/change/"
    assert [str(m) for m in response.context["messages"]] == ["Queued 1 event(s) for processing."]
    # and: the event is queued once, the replay audited once, naming the operator
    assert pending_topics() == ["webhook.received"]
    [audit] = replays()
    assert (audit.target_id, audit.actor_user_id, audit.actor_label) == (
        str(event.pk),
        admin_user.pk,
        f"admin:{admin_user.get_username()}",
    )


def test_a_processed_events_page_offers_the_replay_the_list_offers(tenant_a, shop):
    # given: a processed event (the list's replay re-runs it safely)
    event = a_processed_payment(tenant_a, shop)
    client, _ = superuser_client()
    # when / then: its page has the button too
    assert replay_url(page_of(client, event)) is not None


def test_a_resolved_events_page_has_no_replay_button_and_a_forged_post_replays_nothing(tenant_a, shop):
    # given: a failed event's replay address, then the event resolved by an operator
    event, _ = a_session_mismatch(tenant_a, shop)
    client, _ = superuser_client()
    url = replay_url(page_of(client, event))
    assert url is not None
    resolve([event.pk])
    # when: a superuser opens its page, then posts to the replay address anyway
    page = client.get(f"/admin/payments/webhookevent/{event.pk}/change/", follow=True).content.decode()
    response = client.post(url, follow=True)
    # then: no button; the post replays nothing and says why
    assert replay_url(page) is None
    assert [str(m) for m in response.context["messages"]] == [
        "Queued 0 event(s) for processing; 1 skipped (resolved by an operator)."
    ]
    assert pending_topics() == [] and replays() == []
    assert event_of(event.pk).status == "resolved"


def test_the_replay_address_does_nothing_on_a_get_or_without_the_forms_csrf_token(tenant_a, shop):
    # given: a failed event's replay address
    event, _ = a_session_mismatch(tenant_a, shop)
    client, admin_user = superuser_client()
    url = replay_url(page_of(client, event))
    assert url is not None
    # when: it is opened (a link, a prefetch), and posted from another site (no CSRF token)
    got = client.get(url)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    forged = strict.post(url)
    # then: refused, nothing queued or audited
    assert (got.status_code, forged.status_code) == (405, 403)
    assert pending_topics() == [] and replays() == []
    assert event_of(event.pk).status == "failed"


def test_staff_who_are_not_superusers_see_no_replay_button_and_their_post_is_refused(tenant_a, shop):
    # given: a failed event's replay address, and platform staff who may view and change everything
    event, _ = a_session_mismatch(tenant_a, shop)
    superuser, _ = superuser_client()
    url = replay_url(page_of(superuser, event))
    assert url is not None
    staff = cast(User, UserFactory(is_staff=True, is_superuser=False))
    staff.user_permissions.set(Permission.objects.filter(codename__regex=r"^(view|change)_"))
    client = Client()
    client.force_login(User.objects.get(pk=staff.pk))
    # when: they open the event's page (the rows they may see) and post to the replay address
    page = client.get(f"/admin/payments/webhookevent/{event.pk}/change/", follow=True).content.decode()
    response = client.post(url)
    # then: no button, 403, nothing queued or audited
    assert replay_url(page) is None
    assert response.status_code == 403
    assert pending_topics() == [] and replays() == []
