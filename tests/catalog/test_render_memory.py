"""Rendering a large original keeps one full-size image in memory, the decoded original: the
picture is turned, flattened and reduced a band of rows at a time, and the result is pixel for
pixel what turning, flattening and downscaling the whole picture gives (peak memory figures are
in the README, not asserted here)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from apps.catalog import images

ORIENTATION = 0x0112
PREVIEW_MAX_PX, QUALITY, MARK = 300, 85, "Studio"


def render(original: bytes) -> images.Derivatives:
    return images.render_derivatives(
        original, watermark_text=MARK, preview_max_px=PREVIEW_MAX_PX, thumbnail_max_px=100, quality=QUALITY
    )


def png(image: Image.Image, *, orientation: int | None = None) -> bytes:
    """`image` as a PNG, its EXIF orientation (if any) in an eXIf chunk before the pixels."""
    options: dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def picture(mode: str, size: tuple[int, int]) -> Image.Image:
    """A picture with detail everywhere (grain over gradients), in `mode`."""
    grain = Image.effect_noise(size, 60).convert("L")
    ramp = Image.linear_gradient("L").resize(size)
    rgb = Image.merge("RGB", (grain, ramp, ramp.transpose(Image.Transpose.ROTATE_180)))
    if mode == "RGBA":
        rgb.putalpha(ramp.transpose(Image.Transpose.ROTATE_90).resize(size))
        return rgb
    if mode == "P+transparency":
        paletted = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
        paletted.info["transparency"] = 3
        return paletted
    if mode == "I;16":
        return grain.convert("I").point(lambda value: value * 257).convert("I;16")
    return rgb.convert(mode)


def spy(monkeypatch: pytest.MonkeyPatch, name: str, made: list[tuple[str, tuple[int, int]]]) -> None:
    """Record the size of every image the project's `images.<name>` returns (it still runs)."""
    real: Callable[..., Image.Image] = getattr(images, name)

    def recording(*args: Any, **kwargs: Any) -> Image.Image:
        result = real(*args, **kwargs)
        made.append((name, result.size))
        return result

    monkeypatch.setattr(images, name, recording)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16"])
def test_the_render_makes_no_full_size_copy_of_the_original(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # given: a 3000x2000 PNG shown turned a quarter (EXIF orientation 6)
    original = png(picture(mode, (3000, 2000)), orientation=6)
    made: list[tuple[str, tuple[int, int]]] = []
    for name in ("upright", "narrow_grey", "_flatten_to_rgb"):
        spy(monkeypatch, name, made)
    # when: its derivatives are rendered
    rendered = render(original)
    # then: upright, portrait, and every image turned, narrowed or flattened on the way is a
    # band of the picture, none of them a full-size copy of it
    assert (rendered.preview_size, rendered.thumbnail_size) == ((200, 300), (67, 100))
    assert made, "the render no longer turns and flattens through upright / _flatten_to_rgb"
    largest = max(width * height for _, (width, height) in made)
    assert largest <= 3000 * 2000 // 4, made


@pytest.mark.parametrize("orientation", [None, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "P+transparency", "I;16"])
def test_the_preview_is_the_whole_picture_turned_flattened_and_downscaled(mode: str, orientation: int | None) -> None:
    # given: a picture whose size is no multiple of the reduction factor nor of the band height
    source = picture(mode, (1237, 611))
    # when: its derivatives are rendered
    rendered = render(png(source, orientation=orientation))
    # then: they are exactly those of the whole picture turned, flattened onto white and downscaled
    whole = images._flatten_to_rgb(images.upright(source, orientation))
    whole.thumbnail((PREVIEW_MAX_PX, PREVIEW_MAX_PX), Image.Resampling.LANCZOS)
    marked = images.apply_watermark(whole, MARK)
    assert rendered.preview_size == marked.size
    assert rendered.preview == images._encode_jpeg(marked, quality=QUALITY)
