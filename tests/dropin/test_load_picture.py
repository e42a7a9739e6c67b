"""`load_picture`, how the face backends see a selfie or a photo: as displayed (upright by its
EXIF orientation, in its own tones), whatever the camera wrote, or refused as unreadable; never
a crash that leaves a selfie or a photo's drop-in job retrying for nothing."""

from __future__ import annotations

import io
import struct
from typing import Any

from PIL import Image

from apps.dropin.faces.base import load_picture

ORIENTATION, MAKE, Y_POSITION = 0x0112, 0x010F, 0x011F


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_a_jpeg_whose_exif_holds_a_tag_of_an_unexpected_type_is_read_upright() -> None:
    # given: a landscape JPEG to be turned by 90 degrees, whose EXIF carries YPosition (a number)
    # as text, as some cameras and editors write it: Pillow reads that EXIF but cannot write it
    exif = Image.Exif()
    exif[ORIENTATION], exif[MAKE] = 6, "Canon"
    raw = encoded(Image.new("RGB", (600, 400), (20, 40, 220)), "JPEG", exif=exif.tobytes())
    make_entry = struct.pack(">HH", MAKE, 2)
    assert raw.count(make_entry) == 1
    data = raw.replace(make_entry, struct.pack(">HH", Y_POSITION, 2))
    # when: a face backend loads it
    picture = load_picture(data)
    # then: it is the portrait the camera meant
    assert picture.image.size == (400, 600) and picture.full_size == (400, 600) and picture.reoriented


def test_a_16_bit_grey_png_is_read_in_its_own_tones_not_white() -> None:
    # given: a 16-bit greyscale PNG of mid grey
    data = encoded(Image.new("I;16", (300, 200), 32_768), "PNG")
    # when: a face backend loads it
    picture = load_picture(data)
    # then: mid grey, as RGB (every value over 255 clipped to white before)
    assert picture.image.mode == "RGB"
    assert 100 <= picture.image.convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)) <= 160  # type: ignore[operator]
