"""Kill switches: engaged, a capability stops taking work (checkout 503) or holds its workers
(payout batches, drop-in jobs, fan-outs) until released; the cooldown; audit; the command."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from apps.dropin.services import dropin_job_process
from apps.notifications.services import announcement_fanout
from apps.ops.killswitch import (
    CapabilityDisabled,
    CooldownActive,
    capability_enabled,
    kill_switch_engage,
    kill_switch_release,
)
from apps.ops.models import KillSwitch
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.dropin.helpers import an_event, enrolled_face, job, photo_of
from tests.notifications.helpers import event_with_attendees, sent_announcement

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_engaged_switch_holds_until_its_cooldown_unless_forced() -> None:
    assert capability_enabled("checkout")
    kill_switch_engage(capability="checkout", reason="provider outage", actor_label="ops", cooldown_seconds=600)
    assert not capability_enabled("checkout")
    with pytest.raises(CooldownActive):
        kill_switch_release(capability="checkout", actor_label="ops")
    assert not capability_enabled("checkout")
    kill_switch_release(capability="checkout", actor_label="ops", force=True)
    assert capability_enabled("checkout")
    with system_context("test: audit"):
        actions = list(AuditLog.objects.filter(target_type="kill_switch").order_by("pk").values_list("action", "data"))
    assert [a for a, _ in actions] == ["kill_switch.engage", "kill_switch.release"]
    assert actions[1][1] == {"forced": True}


def test_engaging_an_engaged_switch_again_never_shortens_its_cooldown() -> None:
    # given: a switch engaged in an incident with a ten-minute cooldown
    first = kill_switch_engage(capability="checkout", reason="provider outage", actor_label="ops", cooldown_seconds=600)
    # when: it is engaged again with no cooldown (a new reason), then released without force
    again = kill_switch_engage(capability="checkout", reason="still down", actor_label="other", cooldown_seconds=0)
    # then: the first cooldown still runs: the release is refused and the capability stays off
    assert again.cooldown_until == first.cooldown_until
    assert again.reason == "still down"
    with pytest.raises(CooldownActive):
        kill_switch_release(capability="checkout", actor_label="other")
    assert not capability_enabled("checkout")
    # and a longer cooldown given again does extend it
    longer = kill_switch_engage(capability="checkout", reason="worse", actor_label="ops", cooldown_seconds=1200)
    assert longer.cooldown_until > first.cooldown_until


def test_a_switch_cannot_be_engaged_without_a_reason_or_for_an_unknown_capability() -> None:
    with pytest.raises(ValueError):
        kill_switch_engage(capability="checkout", reason=" ", actor_label="ops")
    with pytest.raises(ValueError):
        kill_switch_engage(capability="everything", reason="x", actor_label="ops")
    with pytest.raises(IntegrityError), transaction.atomic():
        KillSwitch.objects.create(capability="checkout", engaged=True)  # no reason, no cooldown
    assert capability_enabled("checkout")


def test_checkout_answers_503_with_retry_after_and_writes_nothing(tenant_a: Any) -> None:
    kill_switch_engage(capability="checkout", reason="incident", actor_label="ops", cooldown_seconds=0)
    response = tenant_a.client().post(
        "/api/v1/checkouts",
        {"email": "a@example.com", "provider": "sandbox", "lines": [{"product": 1, "quantity": 1}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="during-the-incident",
    )
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "60"
    assert response.json()["capability"] == "checkout"
    from apps.commerce.models import Checkout
    from apps.idempotency.models import IdempotencyKey

    with system_context("test"):
        assert not Checkout.objects.exists()
        assert not IdempotencyKey.objects.filter(key="during-the-incident").exists()
    kill_switch_release(capability="checkout", actor_label="ops")
    assert capability_enabled("checkout")


def test_payout_batches_pause_while_switched_off() -> None:
    kill_switch_engage(capability="payouts", reason="bank file issue", actor_label="ops", cooldown_seconds=0)
    result = payout_batch_run(trigger="test")
    assert result.paused and result.batch_id is None
    assert result.describe() == "payouts are switched off (kill switch)"


def test_drop_in_jobs_wait_while_switched_off_and_run_after(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann"])
    kill_switch_engage(capability="dropin", reason="backend bill spike", actor_label="ops", cooldown_seconds=0)
    with tenant_context(tenant_a.org.pk), pytest.raises(CapabilityDisabled):
        dropin_job_process(job_id=job_id)
    assert (job(job_id).status, job(job_id).attempts) == ("queued", 0)  # not even an attempt
    kill_switch_release(capability="dropin", actor_label="ops")
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"


def test_an_announcement_fan_out_waits_while_switched_off(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=2)
    announcement = sent_announcement(tenant_a.org, event)
    kill_switch_engage(capability="fanout", reason="mail provider incident", actor_label="ops", cooldown_seconds=0)
    with tenant_context(tenant_a.org.pk), pytest.raises(CapabilityDisabled):
        announcement_fanout(announcement_id=announcement.pk)
    kill_switch_release(capability="fanout", actor_label="ops")
    with tenant_context(tenant_a.org.pk):
        assert announcement_fanout(announcement_id=announcement.pk).deliveries == 2


def test_the_command_engages_lists_and_releases() -> None:
    out = io.StringIO()
    call_command("kill_switch", "engage", "dropin", "--reason", "test run", "--cooldown", "0", stdout=out)
    assert "dropin    ENGAGED by manage.py kill_switch" in out.getvalue()
    assert "checkout  released" in out.getvalue()
    out = io.StringIO()
    call_command("kill_switch", "release", "dropin", stdout=out)
    assert "dropin    released" in out.getvalue()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("kill_switch", "engage", "dropin", stdout=io.StringIO())


@pytest.mark.parametrize("cooldown", ["inf", "nan", "-5", "1e12", "soon"])
def test_the_command_refuses_a_cooldown_that_is_not_0_to_30_days(cooldown: str) -> None:
    from django.core.management.base import CommandError

    # when: an operator engages a switch with a cooldown out of range or not a number
    with pytest.raises(CommandError, match="cooldown"):
        call_command("kill_switch", "engage", "dropin", "--reason", "incident", "--cooldown", cooldown)
    # then: a clear error, and the switch is not engaged
    assert not KillSwitch.objects.filter(capability="dropin", engaged=True).exists()
