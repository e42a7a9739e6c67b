"""Pillow work for photos: probing uploads and rendering watermarked derivatives.

Pure functions over bytes: no database, no storage. Rendering is deterministic (same original,
same studio name, same settings → byte-identical JPEGs), which keeps the derivatives task
idempotent.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageDraw, ImageFont

# EXIF orientations that swap width and height (rotations by 90 or 270 degrees).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112
WATERMARK_ANGLE_DEGREES = 30
WATERMARK_FILL = (255, 255, 255, 120)
WATERMARK_STROKE = (0, 0, 0, 110)
WATERMARK_FONT_CANDIDATES = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf")


class ImageRejected(Exception):
    """The bytes are not an acceptable photo (unknown or disallowed format, too large, corrupt)."""


def megapixels(pixels: int) -> str:
    """ "144", "12.5": a pixel count in megapixels, for people."""
    return f"{pixels / 1_000_000:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class ProbedImage:
    format: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int

    @property
    def extension(self) -> str:
        return {"JPEG": "jpg"}.get(self.format, self.format.lower())


@dataclass(frozen=True)
class Derivatives:
    preview: bytes
    preview_size: tuple[int, int]
    thumbnail: bytes
    thumbnail_size: tuple[int, int]


def probe_image(stream: IO[bytes], *, allowed_formats: Collection[str], max_pixels: int) -> ProbedImage:
    """Identify an upload from its header and check its structure, without decoding all pixels.

    Raises ImageRejected. Leaves the stream at position 0.
    """
    try:
        stream.seek(0)
        with Image.open(stream) as image:
            # Format and size come from the header; both are checked before anything that could
            # decode pixels (an over-limit image is refused at the cost of its header).
            # A camera JPEG that embeds a second picture (MPF: a large preview, a stereo pair) is
            # named MPO by Pillow; its bytes are a JPEG whose first picture is the photo.
            image_format = "JPEG" if image.format == "MPO" else image.format or ""
            width, height = image.size
            if image_format not in allowed_formats:
                raise ImageRejected(
                    f"Unsupported image format {image_format or 'unknown'}; allowed: {', '.join(allowed_formats)}."
                )
            if width * height > max_pixels:
                raise ImageRejected(
                    f"The image has {megapixels(width * height)} megapixels; the limit is {megapixels(max_pixels)} "
                    "megapixels."
                )
            orientation = _header_orientation(image)
        # Pillow's verify() must come straight after open (reading EXIF first breaks it for PNG).
        stream.seek(0)
        with Image.open(stream) as fresh:
            fresh.verify()
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refuses it while reading the header: over twice its MAX_IMAGE_PIXELS.
        bomb = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageRejected(
            f"The image has over {bomb // 1_000_000} megapixels; the limit is {megapixels(max_pixels)} megapixels."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for unreadable images
        raise ImageRejected("The file is not a readable image.") from exc
    finally:
        stream.seek(0)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return ProbedImage(format=image_format, width=width, height=height)


def _header_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation found without decoding pixels. For PNG, `getexif()` decodes the whole
    image (its plugin loads it to look for an eXIf chunk after the image data), so only an eXIf
    chunk before the data counts (where PNG puts it for orientation to apply); other formats
    carry EXIF in their header."""
    if image.format == "PNG":
        raw = image.info.get("exif")
        if not raw:
            return None
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(_EXIF_ORIENTATION_TAG)
    else:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG)
    return int(value) if isinstance(value, int) else None


def render_derivatives(
    original: bytes, *, watermark_text: str, preview_max_px: int, thumbnail_max_px: int, quality: int
) -> Derivatives:
    """Render the watermarked preview and the thumbnail (made from the preview, so also marked).

    Upright (EXIF orientation applied), RGB (transparency flattened onto white), metadata
    stripped (no GPS leaks through a preview), never upscaled. Raises ImageRejected.

    Memory: the decoded original is the only full-size image (`_preview_pixels`); a JPEG is
    decoded at a reduced scale already (`draft`), and each derivative is made from the one before.
    """
    try:
        with Image.open(io.BytesIO(original)) as source:
            orientation = _header_orientation(source)
            # JPEG: let the decoder downscale by a power of two while staying >= the preview size.
            source.draft("RGB", (preview_max_px, preview_max_px))
            preview = _preview_pixels(source, orientation, max_px=preview_max_px)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"The original could not be decoded: {exc}") from exc

    preview = apply_watermark(preview, watermark_text)
    thumbnail = preview.copy()
    thumbnail.thumbnail((thumbnail_max_px, thumbnail_max_px), Image.Resampling.LANCZOS)
    return Derivatives(
        preview=_encode_jpeg(preview, quality=quality),
        preview_size=preview.size,
        thumbnail=_encode_jpeg(thumbnail, quality=quality),
        thumbnail_size=thumbnail.size,
    )


# Rows of the upright picture turned, flattened and reduced at a time: a few MB each, whatever
# the original's size.
_BAND_ROWS = 256
# As `Image.thumbnail`'s default: reduce by a whole factor while staying >= twice the final size,
# then resample the rest with the filter (indistinguishable from resampling it all).
_REDUCING_GAP = 2.0


def _preview_pixels(source: Image.Image, orientation: int | None, *, max_px: int) -> Image.Image:
    """The picture upright, in RGB, fitted in `max_px` square: pixel for pixel what
    `_flatten_to_rgb(upright(source, orientation))` then `.thumbnail((max_px, max_px), LANCZOS)`
    gives, without a full-size copy of `source`.

    Bands of `_BAND_ROWS` upright rows (a whole number of reduction blocks) are cut from `source`,
    turned, flattened and reduced by the whole factor one at a time, so every per-pixel step works
    on a band and the box-averaging `reduce` sees the same blocks as over the whole picture; the
    LANCZOS step then resamples the reduced picture over the exact area `thumbnail` would.
    """
    stored_width, stored_height = source.size
    turned = (orientation or 1) in _TRANSPOSING_ORIENTATIONS
    width, height = (stored_height, stored_width) if turned else (stored_width, stored_height)
    fitted = _thumbnail_size((width, height), max_px)
    final_width, final_height = fitted or (width, height)
    factor_x = int(width / final_width / _REDUCING_GAP) or 1
    factor_y = int(height / final_height / _REDUCING_GAP) or 1
    band_rows = factor_y * max(1, _BAND_ROWS // factor_y)
    reduced = Image.new("RGB", (math.ceil(width / factor_x), math.ceil(height / factor_y)))
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        band = source.crop(_stored_box(orientation, source.size, top, bottom))
        band = _flatten_to_rgb(upright(band, orientation)).reduce((factor_x, factor_y))
        reduced.paste(band, (0, top // factor_y))
    if fitted is None:
        return reduced
    return reduced.resize(fitted, Image.Resampling.LANCZOS, box=(0, 0, width / factor_x, height / factor_y))


def _thumbnail_size(size: tuple[int, int], max_px: int) -> tuple[int, int] | None:
    """The size `Image.thumbnail((max_px, max_px))` gives a picture of `size` (the aspect kept
    as closely as whole pixels allow), or None when it fits already (never upscaled)."""
    width, height = size
    if width <= max_px and height <= max_px:
        return None
    aspect = width / height

    def nearest(number: float, error: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=error), 1)

    if aspect <= 1:
        return nearest(max_px * aspect, lambda n: abs(aspect - n / max_px)), max_px
    return max_px, nearest(max_px / aspect, lambda n: 0 if n == 0 else abs(aspect - max_px / n))


def _stored_box(
    orientation: int | None, stored_size: tuple[int, int], top: int, bottom: int
) -> tuple[int, int, int, int]:
    """The box of the stored (not yet turned) picture that holds rows `top`..`bottom` of the
    upright one (`upright` turns it into exactly those rows)."""
    width, height = stored_size
    match orientation or 1:
        case 3 | 4:  # turned upside down: the rows counted from the bottom
            return 0, height - bottom, width, height - top
        case 5 | 6:  # rows were columns, counted from the left
            return top, 0, bottom, height
        case 7 | 8:  # rows were columns, counted from the right
            return width - bottom, 0, width - top, height
        case _:  # as stored, or mirrored left to right
            return 0, top, width, bottom


def apply_watermark(image: Image.Image, text: str) -> Image.Image:
    """Tile `text` diagonally over the whole image, light with a dark outline (visible on any tone).

    The tiling covers every region, so cropping a preview does not remove the mark.
    """
    width, height = image.size
    font_size = max(12, round(max(width, height) / 16))
    font = watermark_font(font_size)
    stroke = max(1, font_size // 14)
    label = text.strip() or "Darkroom"

    side = math.ceil(math.hypot(width, height)) + 2 * font_size
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font, stroke_width=stroke)
    step_x = math.ceil(right - left) + 2 * font_size
    step_y = math.ceil(bottom - top) + 2 * font_size
    for row, y in enumerate(range(0, side, step_y)):
        shift = (row % 2) * step_x // 2
        for x in range(-step_x + shift, side, step_x):
            draw.text((x, y), label, font=font, fill=WATERMARK_FILL, stroke_width=stroke, stroke_fill=WATERMARK_STROKE)
    layer = layer.rotate(WATERMARK_ANGLE_DEGREES, resample=Image.Resampling.BICUBIC)
    offset_x, offset_y = (side - width) // 2, (side - height) // 2
    layer = layer.crop((offset_x, offset_y, offset_x + width, offset_y + height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


@functools.lru_cache(maxsize=32)
def watermark_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A system TrueType font with wide Latin coverage if installed (DejaVu ships with most
    Linux images), else Pillow's built-in font (ASCII-centred: accents may render as boxes)."""
    for candidate in WATERMARK_FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size=size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


# How to turn an image with each EXIF orientation upright (ImageOps.exif_transpose's table).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(image: Image.Image, orientation: int | None) -> Image.Image:
    """The pixels turned by `orientation`, the one `probe_image` read (`_header_orientation`), so
    the preview has the shape of the photo's recorded size. Not `ImageOps.exif_transpose`: it
    writes the EXIF back out, which raises for EXIF that Pillow reads but cannot write (a tag
    holding a value of an unexpected type), and reads a PNG's EXIF after its pixels too."""
    method = _UPRIGHT.get(orientation or 1)
    return image.transpose(method) if method is not None else image


# 16-bit greyscale (PNG): `convert("RGB")` clips every value over 255 to white.
_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def narrow_grey(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image as 8-bit greyscale ("L"), its tones scaled; any other as it is."""
    if image.mode in _WIDE_GREY_MODES:
        return image.convert("I").point(lambda value: value / 256).convert("L")
    return image


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    image = narrow_grey(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _encode_jpeg(image: Image.Image, *, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
