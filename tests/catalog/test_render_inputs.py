"""Originals that cameras and editors really produce, uploaded and rendered end to end: each one
either renders right (upright as its stored size says, in its own tones) or is refused, never
left `pending` by a render that crashes on it."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from apps.catalog.models import Photo
from apps.catalog.services import photo_generate_derivatives, photo_upload
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory
from tests.factories.tenancy import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIENTATION = 0x0112


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def uploaded_and_rendered(tenant: Any, data: bytes) -> tuple[str, Photo]:
    """Upload `data` as a photographer of `tenant`, render it; the render's result and the photo."""
    photographer = UserFactory()
    MembershipFactory(tenant=tenant.org, user=photographer, role="photographer")
    event = EventFactory(tenant=tenant.org)
    photo = photo_upload(
        tenant_id=tenant.org.pk,
        event_id=event.pk,
        uploaded_by=photographer,
        image=io.BytesIO(data),
        image_size=len(data),
    )
    result = photo_generate_derivatives(tenant_id=tenant.org.pk, photo_id=photo.pk)
    with tenant_context(tenant.org.pk):
        photo.refresh_from_db()
    return result, photo


def stored_image(name: str) -> Image.Image:
    with default_storage.open(name, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


def mean_grey(image: Image.Image) -> int:
    """The image's average grey level (0 black, 255 white)."""
    return int(image.convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))  # type: ignore[arg-type]


def test_a_16_bit_grey_png_renders_in_its_own_tones_not_white(tenant_a):
    # given: a 16-bit greyscale PNG (scanners, astro and raw converters write them) of mid grey
    data = encoded(Image.new("I;16", (600, 400), 32_768), "PNG")
    # when: it is uploaded and rendered
    result, photo = uploaded_and_rendered(tenant_a, data)
    # then: the preview is mid grey under its watermark, not blown out to white
    assert result == "ready"
    assert 100 <= mean_grey(stored_image(photo.thumbnail.name)) <= 160


def test_a_jpeg_whose_exif_holds_a_tag_of_an_unexpected_type_renders(tenant_a):
    # given: a rotated JPEG whose EXIF carries YPosition (a number) as text, as some cameras and
    # editors write it: Pillow reads it, but cannot write that EXIF back
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "Canon"  # Make (text); renumbered to YPosition (0x011F) below
    raw = encoded(Image.new("RGB", (600, 400), (20, 40, 220)), "JPEG", exif=exif.tobytes())
    make_entry = struct.pack(">HH", 0x010F, 2)
    assert raw.count(make_entry) == 1
    data = raw.replace(make_entry, struct.pack(">HH", 0x011F, 2))
    # when: it is uploaded and rendered
    result, photo = uploaded_and_rendered(tenant_a, data)
    # then: it is ready, upright (portrait, as its stored size says), with no EXIF in the preview
    assert result == "ready" and photo.derivatives_status == "ready"
    assert (photo.width, photo.height) == (400, 600)
    preview = stored_image(photo.preview.name)
    assert preview.size == (400, 600) and not preview.getexif()


def test_a_png_oriented_after_its_pixels_keeps_the_size_its_upload_recorded(tenant_a):
    # given: a landscape PNG whose EXIF orientation (rotate 90) comes after its image data, where
    # the upload's probe does not look (reading it there means decoding every pixel)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    raw = encoded(Image.new("RGB", (600, 400), (20, 40, 220)), "PNG", exif=exif.tobytes())
    chunks, position = [], 8
    while position < len(raw):
        (length,) = struct.unpack(">I", raw[position : position + 4])
        chunks.append(raw[position : position + 12 + length])
        position += 12 + length
    exif_chunk = next(chunk for chunk in chunks if chunk[4:8] == b"eXIf")
    others = [chunk for chunk in chunks if chunk is not exif_chunk]
    data = raw[:8] + b"".join(others[:-1]) + exif_chunk + others[-1]
    # when: it is uploaded and rendered
    result, photo = uploaded_and_rendered(tenant_a, data)
    # then: the preview has the shape the photo's recorded size gives the pages that lay it out
    assert result == "ready"
    preview = stored_image(photo.preview.name)
    assert (photo.width > photo.height) == (preview.width > preview.height)


def test_a_camera_jpeg_with_a_second_picture_inside_is_taken_as_the_jpeg_it_is(tenant_a):
    # given: a JPEG carrying a second, smaller picture in its MPF data (many Nikon, Sony, Canon
    # and Panasonic cameras embed a large preview so): Pillow names its format MPO
    main, embedded = Image.new("RGB", (600, 400), (20, 40, 220)), Image.new("RGB", (300, 200), (0, 0, 0))
    data = encoded(main, "MPO", save_all=True, append_images=[embedded])
    assert data[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(data)).format == "MPO"
    # when: it is uploaded and rendered
    result, photo = uploaded_and_rendered(tenant_a, data)
    # then: it is accepted as a JPEG (stored as one) and rendered from its main picture
    assert photo.original.name.endswith(".jpg")
    assert result == "ready" and (photo.width, photo.height) == (600, 400)
    assert stored_image(photo.preview.name).size == (600, 400)
