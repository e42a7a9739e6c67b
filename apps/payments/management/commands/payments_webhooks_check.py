"""`manage.py payments_webhooks_check [--provider NAME ...]`: ask each live payment provider whether
its webhook endpoint delivers to Darkroom every event Darkroom acts on (README, "Stripe webhook
endpoint"). A missing subscription is silent otherwise: a refund whose events never arrive stays
`submitted` until DarkroomRefundNotLanding fires a day later.

Providers: those named, else the shop's (`SHOP_PAYMENT_PROVIDERS`, or Stripe, Flutterwave and
PayPal when it is empty), never the sandbox. Darkroom's URL for each is
`DARKROOM_PUBLIC_BASE_URL` + the `webhook-receive` route. The adapters do the asking
(`PaymentProvider.webhook_setup`); this prints, per provider, its problems, warnings and OK, or
that it cannot be checked. Read-only: nothing is written, here or at the providers.

Exit status: 0 when no problem was found, 1 when one was, 2 when a provider could not be asked
(unreachable, credentials refused), whatever the others said: the check is incomplete.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from apps.payments.providers.base import ProviderError, WebhookSetup
from apps.payments.providers.registry import PROVIDER_NAMES, get_provider

LIVE_PROVIDERS = tuple(name for name in PROVIDER_NAMES if name != "sandbox")


def live_providers() -> list[str]:
    """The live providers the shop offers: SHOP_PAYMENT_PROVIDERS without the sandbox, or all of
    them when it is empty (what production offers by default, and what the API accepts)."""
    configured = settings.SHOP_PAYMENT_PROVIDERS
    names = {str(name) for name in configured} if configured else set(LIVE_PROVIDERS)
    return [name for name in LIVE_PROVIDERS if name in names]


def webhook_url(provider: str) -> str:
    """Where `provider` must deliver its webhooks: the public site's `webhook-receive` route."""
    path = reverse("webhook-receive", kwargs={"provider": provider})
    return f"{str(settings.DARKROOM_PUBLIC_BASE_URL).rstrip('/')}{path}"


class Command(BaseCommand):
    help = (
        "Ask the live payment providers whether their webhook endpoints deliver every event Darkroom acts on "
        "to Darkroom's URL. Exit 1 on a problem, 2 when a provider could not be asked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            action="append",
            dest="providers",
            choices=LIVE_PROVIDERS,
            help="check this provider only (repeatable); default: the shop's live providers",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = list(dict.fromkeys(options["providers"] or live_providers()))
        if not names:
            self.stdout.write("No live payment provider is configured (SHOP_PAYMENT_PROVIDERS): nothing to check.")
            return
        ok: list[str] = []
        with_problems: list[str] = []
        not_asked: list[str] = []
        unverifiable: list[str] = []
        for name in names:
            url = webhook_url(name)
            self.stdout.write(f"{name}: checking the webhook setup for {url} ...")
            try:
                setup = get_provider(name).webhook_setup(url=url)
            except ProviderError as exc:
                self.stdout.write(f"{name}: could not ask: {exc.detail.removeprefix(f'{name}: ')}")
                not_asked.append(name)
                continue
            except ValueError as exc:  # settings the adapter cannot be built from
                self.stdout.write(f"{name}: could not ask: not configured: {exc}")
                not_asked.append(name)
                continue
            self._report(name, setup)
            if not setup.checked:
                unverifiable.append(name)
            elif setup.problems:
                with_problems.append(name)
            else:
                ok.append(name)
        self.stdout.write(
            f"Summary: {len(ok)} OK, {len(with_problems)} with problems, {len(not_asked)} not asked, "
            f"{len(unverifiable)} not checkable."
        )
        if not_asked:
            raise CommandError(f"could not ask {', '.join(not_asked)}: the check is incomplete", returncode=2)
        if with_problems:
            raise CommandError(f"webhook setup problems at {', '.join(with_problems)}", returncode=1)

    def _report(self, name: str, setup: WebhookSetup) -> None:
        if not setup.checked:
            for note in setup.notes:
                self.stdout.write(f"{name}: cannot be checked: {note}")
            return
        for problem in setup.problems:
            self.stdout.write(f"{name}: PROBLEM: {problem}")
        for note in setup.notes:
            self.stdout.write(f"{name}: warning: {note}")
        if not setup.problems:
            self.stdout.write(f"{name}: OK")
