"""Announcement e-mails through Postmark's batch API (a local stand-in of `POST /email/batch`
over real HTTP): per-message results, final refusals, and whole-batch failures left for a retry."""

from __future__ import annotations

from typing import Any

import pytest

from apps.notifications.mail_sinks import POSTMARK_TEST_TOKEN, postmark_sink
from apps.notifications.services import DeliveryInterrupted, announcement_fanout
from apps.tenancy.context import tenant_context
from tests.notifications.helpers import deliveries, event_with_attendees, send_all_emails, sent_announcement

pytestmark = pytest.mark.django_db(transaction=True)


def fanned_out(tenant: Any, *, attendees: int) -> Any:
    event, _ = event_with_attendees(tenant.org, consenting=attendees)
    announcement = sent_announcement(tenant.org, event)
    with tenant_context(tenant.org.pk):
        announcement_fanout(announcement_id=announcement.pk)
    return announcement


def use_postmark(settings: Any, url: str, token: str = POSTMARK_TEST_TOKEN) -> None:
    settings.ANNOUNCEMENT_MAILER = "postmark"
    settings.POSTMARK_API_URL, settings.POSTMARK_SERVER_TOKEN = url, token


def test_postmark_sends_in_batches_and_an_inactive_recipient_fails_alone(tenant_a: Any, settings: Any) -> None:
    settings.ANNOUNCEMENT_EMAIL_BATCH = 3
    announcement = fanned_out(tenant_a, attendees=5)
    with postmark_sink() as (postmark, url):
        use_postmark(settings, url)
        postmark.refuse.add("fan1@example.com")
        (result,) = send_all_emails(announcement)
    assert (result.claimed, result.delivered, result.failed) == (5, 4, 1)
    assert sorted(m["to"][0] for m in postmark.messages) == [f"fan{i}@example.com" for i in (0, 2, 3, 4)]
    first = postmark.messages[0]
    assert first["stream"] == "broadcast" and first["message_id"].startswith(f"<announcement.{announcement.pk}.")
    assert "List-Unsubscribe" in first["headers"]
    refused = deliveries(announcement)[1]
    assert (refused.status, refused.last_error[:12]) == ("failed", "postmark 406")


def test_a_batch_postmark_failed_with_a_5xx_stays_pending_with_one_attempt(tenant_a: Any, settings: Any) -> None:
    announcement = fanned_out(tenant_a, attendees=3)
    with postmark_sink() as (postmark, url):
        use_postmark(settings, url)
        postmark.accept_at_most = 0
        with pytest.raises(DeliveryInterrupted):
            send_all_emails(announcement)
        assert postmark.count == 0
    rows = deliveries(announcement)
    assert [(d.status, d.attempts, d.claim_token) for d in rows] == [("pending", 1, None)] * 3
    assert "503" in rows[0].last_error


@pytest.mark.parametrize("problem", ["bad token", "unverified sender"])
def test_a_batch_postmark_refused_whole_waits_without_spending_attempts_until_it_is_fixed(
    tenant_a: Any, settings: Any, problem: str
) -> None:
    # given: Postmark refuses every batch as a whole (401: a wrong token; 422: the From address is
    # not a verified sender signature), for longer than the attempts allow
    settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS = 2
    announcement = fanned_out(tenant_a, attendees=3)
    with postmark_sink() as (postmark, url):
        use_postmark(settings, url, token="wrong" if problem == "bad token" else POSTMARK_TEST_TOKEN)
        postmark.unverified_sender = problem == "unverified sender"
        for _ in range(settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS + 1):
            with pytest.raises(DeliveryInterrupted):
                send_all_emails(announcement)
        # then: Postmark took none of them, so none spent an attempt or failed
        rows = deliveries(announcement)
        assert [(d.status, d.attempts, d.claim_token) for d in rows] == [("pending", 0, None)] * 3
        assert ("401" if problem == "bad token" else "422") in rows[0].last_error
        # when: the operator fixes the configuration, the next try delivers them all
        use_postmark(settings, url)
        postmark.unverified_sender = False
        (result,) = send_all_emails(announcement)
    assert (result.delivered, result.failed) == (3, 0) and postmark.count == 3


def test_a_throttled_batch_waits_without_spending_attempts_and_goes_out_once_postmark_takes_it(
    tenant_a: Any, settings: Any
) -> None:
    # given: Postmark answers 429 (its rate limit) to every batch, for longer than the attempts allow
    settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS = 2
    announcement = fanned_out(tenant_a, attendees=3)
    with postmark_sink() as (postmark, url):
        use_postmark(settings, url)
        postmark.throttled = True
        for _ in range(settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS + 1):
            with pytest.raises(DeliveryInterrupted):
                send_all_emails(announcement)
        # then: nothing was handed over, so no e-mail spent an attempt or failed
        rows = deliveries(announcement)
        assert [(d.status, d.attempts) for d in rows] == [("pending", 0)] * 3
        assert "429" in rows[0].last_error
        # when: the throttle lifts, the next try delivers them all
        postmark.throttled = False
        (result,) = send_all_emails(announcement)
    assert (result.delivered, result.failed) == (3, 0) and postmark.count == 3
