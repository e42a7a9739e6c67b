"""Engage, release or list the kill switches (apps/ops/killswitch.py); every change is audited.

manage.py kill_switch status
manage.py kill_switch engage checkout --reason "provider outage" [--cooldown 600]
manage.py kill_switch release checkout [--force]
"""

from __future__ import annotations

import math
from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.problems import DomainError
from apps.ops.killswitch import kill_switch_engage, kill_switch_release
from apps.ops.models import Capability, KillSwitch

MAX_COOLDOWN_SECONDS = 30 * 24 * 3600


def _cooldown(value: str) -> float:
    """Seconds, a finite number from 0 to MAX_COOLDOWN_SECONDS (argparse reports anything else)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_COOLDOWN_SECONDS:
        raise ArgumentTypeError(f"a cooldown is 0 to {MAX_COOLDOWN_SECONDS} seconds (30 days), not {value!r}")
    return seconds


class Command(BaseCommand):
    help = "Engage, release or list the kill switches (checkout, payouts, dropin, fanout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "engage", "release"])
        parser.add_argument("capability", nargs="?", choices=Capability.values)
        parser.add_argument("--reason", default="", help="why (required to engage)")
        parser.add_argument(
            "--cooldown", type=_cooldown, default=None, help="seconds it stays engaged, 0 to 30 days (default setting)"
        )
        parser.add_argument("--force", action="store_true", help="release before the cooldown ends")

    def handle(self, *args: Any, **options: Any) -> None:
        action, capability = options["action"], options["capability"]
        actor = "manage.py kill_switch"
        if action != "status" and not capability:
            raise CommandError(f"{action} needs a capability: {', '.join(Capability.values)}")
        try:
            if action == "engage":
                if not options["reason"].strip():
                    raise CommandError("engage needs --reason")
                kill_switch_engage(
                    capability=capability,
                    reason=options["reason"],
                    actor_label=actor,
                    cooldown_seconds=options["cooldown"],
                )
            elif action == "release":
                kill_switch_release(capability=capability, actor_label=actor, force=options["force"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        switches = {s.capability: s for s in KillSwitch.objects.all()}
        for name in Capability.values:
            switch = switches.get(name)
            if switch is not None and switch.engaged:
                self.stdout.write(
                    f"{name:9} ENGAGED by {switch.changed_by} at {switch.changed_at:%Y-%m-%d %H:%M:%S}Z: "
                    f"{switch.reason} (cooldown until {switch.cooldown_until:%H:%M:%S}Z)"
                )
            else:
                self.stdout.write(f"{name:9} released")
