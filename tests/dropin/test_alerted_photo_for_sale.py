"""Where a "New photos of you" notification leads: at an event whose studio sells every photo as a
download, a photo uploaded later can be bought on its own there; a photo sold only with the
event's "All photos" says so (fake face backend, the real upload, render and drop-in services)."""

from __future__ import annotations

import io
from typing import cast

import pytest
from django.test import Client

from apps.catalog.downloads import download_products_ensure
from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.catalog.products import Actor
from apps.catalog.uploads import photo_upload
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import DropInJob
from apps.dropin.services import dropin_job_process
from apps.notifications.models import Notification
from apps.tenancy.context import system_context, tenant_context
from tests.dropin.helpers import an_event, enrolled_face, render
from tests.factories.catalog import PriceFactory, PriceListFactory, ProductFactory
from tests.fixtures import TenantBundle

# Uploads store originals outside any transaction, so these tests run outside the test case's.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def priced(event: Event) -> None:
    """9.00 EUR a download, 49.00 EUR for the event's "All photos" product."""
    with tenant_context(event.tenant_id):
        price_list = PriceListFactory(event=event)
        PriceFactory(price_list=price_list, kind=ProductKind.DOWNLOAD, amount_minor=900)
        PriceFactory(price_list=price_list, kind=ProductKind.BULK, amount_minor=4900)
        ProductFactory(event=event, kind=ProductKind.BULK, photo=None)


def uploaded_photo_of(bundle: TenantBundle, event: Event, identity: str) -> Photo:
    """A photo of `identity` uploaded by the owner, rendered and run through drop-in, as the workers would."""
    image = fake_face_image([identity], size=(96, 64), fmt="JPEG")
    with tenant_context(bundle.org.pk):
        photo = photo_upload(
            tenant_id=bundle.org.pk,
            event_id=event.pk,
            uploaded_by=bundle.owner,
            image=io.BytesIO(image),
            image_size=len(image),
        )
        job_id = DropInJob.objects.get(photo_id=photo.pk).pk
    assert render(photo) == "ready"
    with tenant_context(bundle.org.pk):
        assert dropin_job_process(job_id=job_id).notified == 1
    return photo


def notified_page(photo: Photo) -> str:
    """The page the attendee's notification about `photo` opens."""
    with system_context("test: link"):
        link = Notification.objects.get(dedupe_key=f"photo:{photo.pk}").link
    response = Client().get(link)
    assert response.status_code == 200
    return response.content.decode()


def test_a_photo_uploaded_after_the_studio_sold_every_photo_can_be_bought_alone_where_the_alert_leads(
    tenant_a: TenantBundle,
) -> None:
    # given: Ann's selfie registered, and an event whose studio sells every photo as a download
    event = an_event(tenant_a.org)
    priced(event)
    enrolled_face(tenant_a.org, event, "ann")
    download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=Actor(label="test"))
    # when: a photo of Ann is uploaded, and she is told of it
    photo = uploaded_photo_of(tenant_a, event, "ann")
    # then: the page her notification opens sells the photo's download on its own, at its price
    with tenant_context(tenant_a.org.pk):
        download = cast(Product, Product.objects.get(photo=photo, kind=ProductKind.DOWNLOAD))
    page = notified_page(photo)
    assert f'name="product" value="{download.pk}"' in page and "Digital download" in page and "9.00 EUR" in page
    assert "not sold on its own" not in page


def test_a_photo_sold_only_with_all_photos_of_the_event_says_so_where_the_alert_leads(tenant_a: TenantBundle) -> None:
    # given: Ann's selfie registered, and an event that sells only "All photos of this event"
    event = an_event(tenant_a.org)
    priced(event)
    enrolled_face(tenant_a.org, event, "ann")
    # when: a photo of Ann is uploaded, and she is told of it
    photo = uploaded_photo_of(tenant_a, event, "ann")
    # then: the page says the photo is not sold on its own, and offers the event's photos together
    page = notified_page(photo)
    assert "This photo is not sold on its own: it comes with “All photos of this event”." in page
    assert "All photos of this event (downloads)" in page and "Digital download" not in page
