"""Create (or refresh) the demo studio, its logins and its catalog; safe to run repeatedly.

The catalog is one public event with photos the demo photographer uploaded (through the
upload services, so a running worker renders their previews), prices in EUR and something of each
kind to buy: a download per photo (and of each photo uploaded later: the studio sells every photo
as a download), a limited A4 print of a photo of the demo runner (so a shopper who finds themself
with `selfie.jpg` can buy a print of themself) and the bulk "all my photos" product. It is made
once; a later run finds the event with its photos and leaves it (and whatever was sold) as it is.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from PIL import Image, ImageDraw

from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.catalog.services import (
    Actor,
    PriceIn,
    StoredOriginal,
    download_products_ensure,
    event_create,
    photo_create,
    photo_original_store,
    photo_originals_discard,
    price_list_set,
    product_create,
)
from apps.notifications.services import AttendeeIn, attendees_register
from apps.payments.providers.base import minor_to_major
from apps.payouts.services import payout_destination_set
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
DEMO_EVENT_SLUG = "city-marathon"
DEMO_PHOTOS = 6
DEMO_PRINT_STOCK = 25
DEMO_ASSETS = Path(__file__).resolve().parents[2] / "demo_assets"
# Photo number -> (height in pixels, left edge) of the demo runner pasted into it.
DEMO_RUNNER_AT = {2: (300, 60), 5: (360, 300)}
# The photo the demo's A4 print is of: the first of the runner's, which the demo selfie finds.
DEMO_PRINT_PHOTO = min(DEMO_RUNNER_AT)
DEMO_ATTENDEES = [("shopper@demo.darkroom.test", True), ("runner@example.com", True), ("walker@example.com", False)]
DEMO_CURRENCY = "EUR"
DEMO_PRICES = [
    PriceIn(kind=ProductKind.DOWNLOAD, amount_minor=900),
    PriceIn(kind=ProductKind.PRINT, size="A4", amount_minor=2500),
    PriceIn(kind=ProductKind.BULK, amount_minor=4900),
]


@dataclass(frozen=True)
class DemoCatalog:
    event_id: int
    download_product_ids: list[int]
    print_product_id: int | None  # None when an operator removed it from an existing demo event
    bulk_product_id: int | None
    created: bool


def _demo_jpeg(number: int) -> bytes:
    """A 640x427 placeholder photo: a colour gradient with the photo's number on it, and in the
    photos of DEMO_RUNNER_AT the demo runner (demo_assets/runner.jpg), whose face `selfie.jpg`
    finds on the event's "Find me" page."""
    width, height = 640, 427
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    base = (number * 53 % 200, number * 97 % 200, number * 31 % 200)
    for y in range(height):
        shade = y * 55 // height
        draw.line([(0, y), (width, y)], fill=(base[0] + shade, base[1] + shade, base[2] + shade))
    if number in DEMO_RUNNER_AT:
        runner_height, left = DEMO_RUNNER_AT[number]
        with Image.open(DEMO_ASSETS / "runner.jpg") as source:
            runner = source.convert("RGB")
        runner = runner.resize((runner.width * runner_height // runner.height, runner_height))
        image.paste(runner, (left, height - runner_height))
    draw.text((24, 24), f"Demo City Marathon - photo {number}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def demo_catalog(*, organization: Organization, photographer: User) -> DemoCatalog:
    """The demo event and its products, created on the first call.

    The event and its prices commit first; then the photos' originals are stored, outside any
    transaction, and the photos and products commit together (else the originals are discarded
    again). A run stopped in between finds the event without photos and completes it.
    """
    with tenant_context(organization.pk):
        event = Event.objects.filter(tenant=organization, slug=DEMO_EVENT_SLUG).first()
        if event is not None and Photo.objects.filter(tenant=organization, event=event).exists():
            products = list(Product.objects.filter(tenant=organization, event=event).order_by("pk"))
            return DemoCatalog(
                event_id=event.pk,
                download_product_ids=[p.pk for p in products if p.kind == ProductKind.DOWNLOAD],
                print_product_id=next((p.pk for p in products if p.kind == ProductKind.PRINT), None),
                bulk_product_id=next((p.pk for p in products if p.kind == ProductKind.BULK), None),
                created=False,
            )
        if event is None:
            with transaction.atomic():
                event = event_create(
                    tenant_id=organization.pk, title="Demo City Marathon", date=date.today(), slug=DEMO_EVENT_SLUG
                )
                price_list_set(tenant_id=organization.pk, event_id=event.pk, currency=DEMO_CURRENCY, prices=DEMO_PRICES)
        stored: list[StoredOriginal] = []
        try:
            for number in range(1, DEMO_PHOTOS + 1):
                jpeg = _demo_jpeg(number)
                stored.append(
                    photo_original_store(
                        tenant_id=organization.pk,
                        event_id=event.pk,
                        uploaded_by=photographer,
                        image=io.BytesIO(jpeg),
                        image_size=len(jpeg),
                    )
                )
            with transaction.atomic():
                photo_ids = [
                    photo_create(tenant_id=organization.pk, uploaded_by=photographer, stored=original).pk
                    for original in stored
                ]
                downloads = [
                    product_create(
                        tenant_id=organization.pk, event_id=event.pk, kind=ProductKind.DOWNLOAD, photo_id=photo_id
                    ).pk
                    for photo_id in photo_ids
                ]
                print_product = product_create(
                    tenant_id=organization.pk,
                    event_id=event.pk,
                    kind=ProductKind.PRINT,
                    photo_id=photo_ids[DEMO_PRINT_PHOTO - 1],
                    size="A4",
                    sku=f"DEMO-MARATHON-A4-{DEMO_PRINT_PHOTO}",
                    stock_quantity=DEMO_PRINT_STOCK,
                )
                bulk = product_create(tenant_id=organization.pk, event_id=event.pk, kind=ProductKind.BULK)
                # Every photo has its download already: this makes photos uploaded later get theirs.
                download_products_ensure(tenant_id=organization.pk, event_id=event.pk, actor=Actor(label="seed_demo"))
        except BaseException:
            photo_originals_discard(stored=stored)
            raise
    return DemoCatalog(
        event_id=event.pk,
        download_product_ids=downloads,
        print_product_id=print_product.pk,
        bulk_product_id=bulk.pk,
        created=True,
    )


class Command(BaseCommand):
    help = "Create the demo studio: admin, owner, photographer and shopper logins, and a demo event to buy from."

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
        photographer = User.objects.get(username="photographer")
        catalog = demo_catalog(organization=organization, photographer=photographer)
        with tenant_context(organization.pk):
            # The demo photographer is paid out through the sandbox (admin: Payout batches, "Pay out now").
            payout_destination_set(
                tenant=organization, owner=photographer, provider="sandbox", destination="demo-photographer-bank"
            )
            # Attendees to announce to (POST /api/v1/announcements; the e-mails print in the worker's log).
            attendees_register(
                tenant=organization,
                event_id=catalog.event_id,
                attendees=[AttendeeIn(email=email, email_consent=consent) for email, consent in DEMO_ATTENDEES],
                actor_label="seed_demo",
            )
        logins = [
            {"username": u, "password": DEMO_PASSWORD, "role": r or ("platform admin" if s else "shopper")}
            for u, _, r, s in DEMO_USERS
        ]
        if options["json"]:
            payload = {
                "tenant_id": organization.pk,
                "slug": DEMO_SLUG,
                "logins": logins,
                "api_key": issued.raw_key,
                "catalog": asdict(catalog),
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(f"Demo studio '{DEMO_SLUG}' (tenant {organization.pk}) is ready. Logins:")
        for login in logins:
            self.stdout.write(f"  {login['username']:<13} / {login['password']}   ({login['role']})")
        self.stdout.write(f"  API key (shown once): {issued.raw_key}")
        self._print_catalog(catalog, api_key=issued.raw_key)

    def _print_catalog(self, catalog: DemoCatalog, *, api_key: str) -> None:
        price = {
            (p.kind, p.size): f"{DEMO_CURRENCY} {minor_to_major(p.amount_minor, DEMO_CURRENCY)}" for p in DEMO_PRICES
        }
        state = "created" if catalog.created else "already there"
        self.stdout.write(f"Demo event {catalog.event_id} ({state}):")
        self.stdout.write(
            f"  downloads {', '.join(map(str, catalog.download_product_ids))} ({price[(ProductKind.DOWNLOAD, '')]})"
        )
        if catalog.print_product_id is not None:
            self.stdout.write(
                f"  A4 print {catalog.print_product_id} ({price[(ProductKind.PRINT, 'A4')]}, {DEMO_PRINT_STOCK} made)"
            )
        if catalog.bulk_product_id is not None:
            self.stdout.write(f"  all my photos {catalog.bulk_product_id} ({price[(ProductKind.BULK, '')]})")
        product = catalog.print_product_id or next(iter(catalog.download_product_ids), None)
        if product is None:
            return
        order: dict[str, object] = {
            "email": "shopper@demo.darkroom.test",
            "provider": "sandbox",
            "lines": [{"product": product}],
        }
        if product == catalog.print_product_id:  # prints are shipped: the address comes with them
            order["shipping"] = {
                "name": "Demo Shopper",
                "line1": "1 Demo Street",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "DE",
            }
        body = json.dumps(order)
        self.stdout.write("Buy one in the sandbox:")
        self.stdout.write(
            f"  curl -s {settings.DARKROOM_PUBLIC_BASE_URL.rstrip('/')}/api/v1/checkouts "
            f"-H 'Authorization: Bearer {api_key}' "
            "-H \"Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')\" "
            f"-H 'Content-Type: application/json' -d '{body}'"
        )
        self.stdout.write("  then open the checkout's payment_url (GET /api/v1/checkouts/<id>) to pay in the sandbox.")
        self.stdout.write(
            f"Announce to the event's {len(DEMO_ATTENDEES)} demo attendees: POST /api/v1/announcements "
            f'{{"event_id": {catalog.event_id}, "title": ..., "body": ...}}, then POST /api/v1/announcements/<id>/send '
            "(the e-mails, with each attendee's inbox link, print in the worker's log)."
        )
