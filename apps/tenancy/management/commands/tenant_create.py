"""Create a studio (tenant) and its first API key; print them as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import IntegrityError

from apps.tenancy.services import api_key_issue, organization_create


class Command(BaseCommand):
    help = 'Create a tenant; prints {"tenant_id", "slug", "api_key"} (the key is shown only once).'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        slug, name = options["slug"], options["name"]
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(f"invalid slug {slug!r}: use letters, digits, '-' and '_'") from None
        try:
            organization = organization_create(slug=slug, name=name)
        except IntegrityError:
            raise CommandError(f"a tenant with slug {slug!r} already exists") from None
        issued = api_key_issue(tenant=organization, name="default")
        self.stdout.write(
            json.dumps({"tenant_id": organization.pk, "slug": organization.slug, "api_key": issued.raw_key})
        )
