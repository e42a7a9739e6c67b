"""A dead letter's own admin page replays it (README runbook "Outbox backlog growing").

Found walking the admin as an operator: a dead letter's page showed its `last_error` but no way
to replay it; replaying was only the list's action. The page now has a "Replay this dead letter"
button on a dead letter (not on a pending or published message): it posts (CSRF-checked) to the
list action itself, so the replay, its audit row, its message and its permission (platform
superusers) are the list action's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog, User
from tests.factories.tenancy import UserFactory
from tests.outbox.test_dead_letters import UNROUTED, _rows, dead_letters  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.django_db(transaction=True)

FORM = re.compile(r'<form method="post" action="(?P<action>[^"]+)"[^>]*>(?P<body>.*?)</form>', re.S)


def superuser() -> tuple[Client, User]:
    user = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client, user


def page_of(client: Client, message: OutboxMessage) -> str:
    response = client.get(f"/admin/outbox/outboxmessage/{message.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def replay_url(page: str) -> str | None:
    """Where the page's "Replay this dead letter" button posts (its form carries the CSRF token)."""
    for form in FORM.finditer(page):
        if ">Replay this dead letter</button>" in form["body"]:
            assert 'name="csrfmiddlewaretoken"' in form["body"]
            return form["action"]
    return None


def replays() -> list[AuditLog]:
    with system_context("test"):
        return list(AuditLog.objects.filter(action="outbox.replay").order_by("pk"))


def statuses() -> dict[Any, str]:
    return {m.pk: m.status for m in _rows()}


def test_a_dead_letters_page_replays_it_once_audited(
    dead_letters: list[OutboxMessage],  # noqa: F811
    tenant_a: Any,
) -> None:
    # given: a platform superuser on a dead letter's page
    chosen = dead_letters[0]
    client, admin_user = superuser()
    url = replay_url(page_of(client, chosen))
    assert url is not None, "the dead letter's page has no replay button"
    # when: they press the button
    response = client.post(url, follow=True)
    # then: back on its page, told what happened
    assert response.redirect_chain[-1][0] == f"/admin/outbox/outboxmessage/{chosen.pk}/change/"
    assert [str(m) for m in response.context["messages"]] == ["Replayed 1 dead letter(s)."]
    # and: it alone is pending again, the replay audited once, naming the operator
    assert {pk: s for pk, s in statuses().items() if s != "dead"} == {chosen.pk: "pending"}
    [audit] = replays()
    assert (audit.target_id, audit.actor_user_id, audit.tenant_id) == (str(chosen.pk), admin_user.pk, tenant_a.org.pk)


def test_a_message_that_is_not_a_dead_letter_has_no_replay_button(
    dead_letters: list[OutboxMessage],  # noqa: F811
    publish: Any,
    tenant_a: Any,
) -> None:
    # given: a dead letter's replay address, and a pending message
    client, _ = superuser()
    url = replay_url(page_of(client, dead_letters[0]))
    assert url is not None
    [pending] = publish(tenant_id=tenant_a.org.pk, topic=UNROUTED)
    # when / then: the pending message's page has no button
    assert replay_url(page_of(client, pending)) is None
    # and: once replayed, the dead letter's page has none either; posting again replays nothing more
    client.post(url)
    assert replay_url(page_of(client, dead_letters[0])) is None
    again = client.post(url, follow=True)
    assert "Replayed 0 dead letter(s)." in [str(m) for m in again.context["messages"]]
    assert len(replays()) == 1


def test_the_replay_address_does_nothing_on_a_get_or_without_the_forms_csrf_token(
    dead_letters: list[OutboxMessage],  # noqa: F811
) -> None:
    # given: a dead letter's replay address
    client, admin_user = superuser()
    url = replay_url(page_of(client, dead_letters[0]))
    assert url is not None
    # when: it is opened, and posted from another site (no CSRF token)
    got = client.get(url)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    forged = strict.post(url)
    # then: refused; still dead, nothing audited
    assert (got.status_code, forged.status_code) == (405, 403)
    assert set(statuses().values()) == {"dead"} and replays() == []


def test_staff_who_are_not_superusers_see_no_replay_button_and_their_post_is_refused(
    dead_letters: list[OutboxMessage],  # noqa: F811
) -> None:
    # given: a dead letter's replay address, and platform staff who may view and change everything
    superuser_client, _ = superuser()
    url = replay_url(page_of(superuser_client, dead_letters[0]))
    assert url is not None
    staff = UserFactory(is_staff=True, is_superuser=False)
    staff.user_permissions.set(Permission.objects.filter(codename__regex=r"^(view|change)_"))
    client = Client()
    client.force_login(User.objects.get(pk=staff.pk))
    # when: they open the dead letter's page (the rows they may see) and post to the replay address
    page = client.get(f"/admin/outbox/outboxmessage/{dead_letters[0].pk}/change/", follow=True).content.decode()
    response = client.post(url)
    # then: no button, 403; still dead, nothing audited
    assert replay_url(page) is None
    assert response.status_code == 403
    assert set(statuses().values()) == {"dead"} and replays() == []
