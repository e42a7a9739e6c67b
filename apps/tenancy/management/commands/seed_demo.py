"""Create (or refresh) the demo studio and its logins; safe to run repeatedly."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, Membership, Organization, User
from apps.tenancy.services import api_key_issue, api_key_revoke, membership_add, organization_create

DEMO_SLUG = "demo-studio"
DEMO_PASSWORD = "darkroom-demo"  # noqa: S105 - documented demo login, local only
DEMO_USERS = [
    # (username, email, membership role or None, is_superuser)
    ("admin", "admin@demo.darkroom.test", None, True),
    ("owner", "owner@demo.darkroom.test", Membership.Role.OWNER, False),
    ("photographer", "photographer@demo.darkroom.test", Membership.Role.PHOTOGRAPHER, False),
    ("shopper", "shopper@demo.darkroom.test", None, False),
]


class Command(BaseCommand):
    help = "Create the demo studio with admin, owner, photographer and shopper logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the logins as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        if organization is None:
            organization = organization_create(slug=DEMO_SLUG, name="Demo Studio")
        for username, email, role, is_superuser in DEMO_USERS:
            with transaction.atomic():
                user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
                user.email = email
                user.is_staff = is_superuser
                user.is_superuser = is_superuser
                user.set_password(DEMO_PASSWORD)
                user.save()
            if role:
                membership_add(tenant=organization, user=user, role=role)
        with tenant_context(organization.pk):
            stale = list(ApiKey.objects.filter(name="demo", revoked_at__isnull=True).values_list("pk", flat=True))
        for key_id in stale:
            api_key_revoke(tenant=organization, api_key_id=key_id)
        issued = api_key_issue(tenant=organization, name="demo")
        logins = [
            {"username": u, "password": DEMO_PASSWORD, "role": r or ("platform admin" if s else "shopper")}
            for u, _, r, s in DEMO_USERS
        ]
        if options["json"]:
            payload = {"tenant_id": organization.pk, "slug": DEMO_SLUG, "logins": logins, "api_key": issued.raw_key}
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(f"Demo studio '{DEMO_SLUG}' (tenant {organization.pk}) is ready. Logins:")
        for login in logins:
            self.stdout.write(f"  {login['username']:<13} / {login['password']}   ({login['role']})")
        self.stdout.write(f"  API key (shown once): {issued.raw_key}")
