"""Kill switches per capability (DESIGN "Edge protection"); see `apps.ops.models.KillSwitch`.

Reads are cached in-process for KILL_SWITCH_CACHE_SECONDS (1 s): an engaged switch takes effect
everywhere within that, and the checkout path pays one small query a second, not one per
request. If the database cannot be read, the last known state stands (or "released").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.core.problems import DomainError
from apps.ops.models import Capability, KillSwitch
from apps.tenancy.context import system_context
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.killswitch")

_cache: dict[str, tuple[float, bool]] = {}
_cache_lock = threading.Lock()


class CapabilityDisabled(DomainError):
    """An operator engaged the capability's kill switch (503 with Retry-After on the API)."""

    status_code = 503
    slug = "capability-disabled"
    title = "Temporarily unavailable"
    when_it_happens = (
        "Darkroom's operators have switched this part of Darkroom off for a while, during an incident as a "
        "rule: new checkouts, payouts, face matching, or announcements and their e-mails. The body's "
        "`capability` names it. Nothing was done."
    )
    what_to_do = (
        "Wait the number of seconds in the `Retry-After` header, then send the request again with the same "
        "Idempotency-Key."
    )

    def __init__(self, capability: str) -> None:
        super().__init__(
            f"{Capability(capability).label} is switched off by the operators for now; retry later.",
            extra={"capability": capability},
        )
        self.capability = capability
        self.retry_after = int(settings.KILL_SWITCH_RETRY_AFTER_SECONDS)


class CooldownActive(DomainError):
    """An operator tried to switch a part of Darkroom back on within the time it stays off after
    being switched off (`detail` says until when), without forcing it."""

    status_code = 409
    slug = "kill-switch-cooldown"
    title = "The kill switch is in its cooldown"
    what_to_do = (
        "Nothing is asked of an API client: only Darkroom's operators switch parts of Darkroom off and on. "
        "They wait until the time `detail` gives, or force the switch."
    )


def capability_enabled(capability: str) -> bool:
    """False while the capability's switch is engaged (cached per process, see the module doc)."""
    now = time.monotonic()
    cached = _cache.get(capability)
    if cached is not None and now - cached[0] < settings.KILL_SWITCH_CACHE_SECONDS:
        return cached[1]
    try:
        engaged = KillSwitch.objects.filter(capability=capability, engaged=True).exists()
    except DatabaseError:
        logger.warning("kill switch unreadable; keeping the last state", extra={"capability": capability})
        return cached[1] if cached is not None else True
    with _cache_lock:
        _cache[capability] = (now, not engaged)
    return not engaged


def ensure_enabled(capability: str) -> None:
    """Raises CapabilityDisabled while the capability's switch is engaged."""
    if not capability_enabled(capability):
        raise CapabilityDisabled(capability)


def forget_cached() -> None:
    with _cache_lock:
        _cache.clear()


@transaction.atomic
def kill_switch_engage(
    *, capability: str, reason: str, actor_label: str, cooldown_seconds: float | None = None
) -> KillSwitch:
    """Engage the switch. Engaging it again renews the reason and may extend the cooldown, never
    shorten it: only a forced release ends a running cooldown early (audited as forced). Takes the
    switch's row lock. Audited. Raises ValueError for an unknown capability or an empty reason."""
    Capability(capability)
    if not reason.strip():
        raise ValueError("engaging a kill switch needs a reason")
    now = timezone.now()
    cooldown = settings.KILL_SWITCH_COOLDOWN_SECONDS if cooldown_seconds is None else cooldown_seconds
    switch, _ = KillSwitch.objects.select_for_update().get_or_create(capability=capability)
    cooldown_until = now + timedelta(seconds=max(0.0, cooldown))
    if switch.engaged and switch.cooldown_until is not None:
        cooldown_until = max(cooldown_until, switch.cooldown_until)
    switch.engaged, switch.reason, switch.changed_by, switch.changed_at = True, reason.strip()[:500], actor_label, now
    switch.cooldown_until = cooldown_until
    switch.save()
    with system_context("kill switch engage"):  # a platform-level audit row (no tenant)
        audit_record(
            action="kill_switch.engage",
            tenant_id=None,
            actor_label=actor_label,
            target_type="kill_switch",
            target_id=capability,
            data={"reason": switch.reason, "cooldown_until": switch.cooldown_until.isoformat()},
        )
    forget_cached()
    logger.warning("kill switch engaged", extra={"capability": capability, "reason": switch.reason})
    return switch


@transaction.atomic
def kill_switch_release(*, capability: str, actor_label: str, force: bool = False) -> KillSwitch:
    """Release the switch; before its cooldown ends only with `force`. Audited. Raises
    CooldownActive, ValueError for an unknown capability."""
    Capability(capability)
    switch, _ = KillSwitch.objects.select_for_update().get_or_create(capability=capability)
    if not switch.engaged:
        return switch
    now = timezone.now()
    if switch.cooldown_until and now < switch.cooldown_until and not force:
        raise CooldownActive(
            f"The {capability} switch stays engaged until {switch.cooldown_until.isoformat()} unless forced."
        )
    switch.engaged, switch.changed_by, switch.changed_at = False, actor_label, now
    switch.save(update_fields=["engaged", "changed_by", "changed_at"])
    with system_context("kill switch release"):  # a platform-level audit row (no tenant)
        audit_record(
            action="kill_switch.release",
            tenant_id=None,
            actor_label=actor_label,
            target_type="kill_switch",
            target_id=capability,
            data={"forced": bool(force and switch.cooldown_until and now < switch.cooldown_until)},
        )
    forget_cached()
    logger.warning("kill switch released", extra={"capability": capability})
    return switch


def collect_kill_switch_metrics() -> Iterator[Metric]:
    """darkroom_kill_switch_engaged{capability}: 1 while an operator has the capability off."""
    try:
        engaged = set(KillSwitch.objects.filter(engaged=True).values_list("capability", flat=True))
    except DatabaseError:
        logger.warning("kill switch metrics unavailable (database)", exc_info=True)
        return
    gauge = GaugeMetricFamily(
        "darkroom_kill_switch_engaged", "1 while the capability is switched off.", labels=["capability"]
    )
    for capability in Capability.values:
        gauge.add_metric([capability], 1.0 if capability in engaged else 0.0)
    yield gauge
