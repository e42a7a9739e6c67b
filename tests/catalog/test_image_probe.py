"""`probe_image` reads an upload's format, size and orientation from its header: an image over
the pixel limit is refused without decoding it (a PNG of blank pixels is a few hundred KB on the
wire and hundreds of MB decoded), and an accepted PNG's orientation is read without decoding."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image, PngImagePlugin

from apps.catalog import images
from apps.catalog.models import Event
from apps.dropin.services import SELFIE_FORMATS, SELFIE_MAX_PIXELS
from tests.web.shop.conftest import an_event


def png(width: int, height: int, *, orientation: int | None = None) -> bytes:
    """A complete, valid PNG of blank pixels (deflate of zeros: tiny), with an eXIf chunk before
    the image data when `orientation` is given."""
    buffer = io.BytesIO()
    extra: dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    Image.new("RGBA", (width, height)).save(buffer, format="PNG", compress_level=9, **extra)
    return buffer.getvalue()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the PNGs whose pixels were decoded (PngImageFile.load) during the test."""
    sizes: list[tuple[int, int]] = []
    original_load = PngImagePlugin.PngImageFile.load

    def spying_load(self: Any) -> Any:
        sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", spying_load)
    return sizes


def test_an_over_limit_png_is_refused_without_being_decoded(decoded: list[tuple[int, int]]) -> None:
    bomb = png(7_000, 7_000)  # 49 Mpx, over the selfie limit (40 Mpx); ~196 MB once decoded
    assert len(bomb) < 1_000_000
    with pytest.raises(images.ImageRejected, match="pixels"):
        images.probe_image(io.BytesIO(bomb), allowed_formats=SELFIE_FORMATS, max_pixels=SELFIE_MAX_PIXELS)
    assert decoded == []


def test_an_accepted_pngs_orientation_is_read_without_decoding_it(decoded: list[tuple[int, int]]) -> None:
    probed = images.probe_image(io.BytesIO(png(300, 200, orientation=6)), allowed_formats={"PNG"}, max_pixels=10**6)
    # then: rotated by 90 degrees as displayed, and no pixel decoded
    assert (probed.format, probed.width, probed.height) == ("PNG", 200, 300)
    assert decoded == []


@pytest.mark.django_db
def test_anonymous_find_me_refuses_the_bomb_without_decoding_it(tenant_a: Any, decoded: list[tuple[int, int]]) -> None:
    event: Event = an_event(tenant_a.org, slug="bomb-run", title="Bomb Run")
    response = Client().post(
        f"/s/{tenant_a.org.slug}/{event.slug}/find-me",
        {"image": SimpleUploadedFile("me.png", png(7_000, 7_000), "image/png")},
    )
    assert response.status_code == 422 and decoded == []
