"""Face backend contract shared by the drop-in services and every backend.

A backend detects faces in image bytes, enrols one selfie face per call and matches a photo's
faces against the caller's stored enrolments. Backends are stateless towards the database: the
caller stores what `enroll()` returns and passes it back to `match_photo()` as `Enrolled` rows,
so a backend never decides who is enrolled. A match only ever names subjects in `enrolled`.

A photo is analysed once: `analyse_photo()` is the only operation that decodes a photo and
detects its faces (local: dlib detection and descriptors; Rekognition: one IndexFaces into the
photo collection when the photo is to be indexed, else one DetectFaces; fake: its EXIF). The
drop-in match (`match_photo()`) and the find-me index (`index_photo()`) both take the returned
`PhotoAnalysis`, never the image, so neither detects again. The analysis lives in the caller's
hands for one job; backends keep no state between calls (no cache of photos or faces).

"Find me" runs the other way, with the same rule: `index_photo()` gives a photo's faces in the
form the caller stores (`IndexedFace`), and `search_selfie()` matches a shopper's selfie
against the stored photo faces the caller passes back (`IndexedBatch`), storing nothing of the
selfie anywhere.

Invariants every backend keeps:
- Boxes are pixels of the image as displayed, i.e. after its EXIF orientation is applied.
- `face_key` is unique within one `SearchResult` and stable: the same bytes give the same keys.
- `matches` holds at most one entry per (face_key, subject), only at/above the match threshold.
- `search_selfie()` returns at most one entry per subject, only at/above the same threshold.
- Client errors (`FaceRejected` and subclasses) mean "this image will never work"; transient
  errors are `FaceBackendUnavailable` and the caller retries. Anything else is a bug.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from django.conf import settings
from PIL import ExifTags, Image, UnidentifiedImageError

from apps.catalog.images import narrow_grey, upright

BACKEND_NAMES: tuple[str, ...] = ("local", "rekognition", "fake")
DESCRIPTOR_SIZE = 128  # the local backend's dlib descriptor
DESCRIPTOR_BYTES = DESCRIPTOR_SIZE * 4  # stored as little-endian float32
DEFAULT_MAX_FACES_PER_PHOTO = 50
# A selfie may show bystanders far behind the attendee: a second face makes it ambiguous
# (SeveralFaces) only if it is at least this fraction of the main face's width.
COMPETING_FACE_RATIO = 0.5

T = TypeVar("T")
A = TypeVar("A", bound="PhotoAnalysis")


@dataclass(frozen=True)
class Box:
    """A face's rectangle in pixels of the image as displayed (after EXIF orientation)."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class EnrolledFace:
    """What `enroll()` returns; the caller stores both fields.

    `ref`: Rekognition FaceId; fake: the identity; local: "".
    `embedding`: local: the 128-d dlib descriptor; others: ().
    """

    ref: str
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class Enrolled:
    """A stored enrolment passed back into `match_photo()`; `subject` is the caller's id ("face-17")."""

    subject: str
    ref: str
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class PhotoFace:
    """One face found in a photo; `face_key` is stable for the same image bytes."""

    face_key: str
    box: Box


@dataclass(frozen=True)
class FaceMatch:
    """A photo face that resembles an enrolled subject; `similarity` is in 0..1, higher is closer."""

    face_key: str
    subject: str
    similarity: float


@dataclass(frozen=True)
class SearchResult:
    """Faces of a photo and their matches.

    `matches` has at most one entry per (face_key, subject), all at/above the threshold.
    `searches` counts billable face searches (Rekognition: SearchFacesByImage calls made;
    local and fake: faces compared against a non-empty enrolment list).
    """

    faces: list[PhotoFace]
    matches: list[FaceMatch]
    searches: int


@dataclass(frozen=True)
class IndexedFace:
    """A photo face `index_photo()` made searchable; the caller stores all three fields.

    `ref`: Rekognition FaceId (in the photo collection); fake: the identity; local: "".
    `descriptor`: local: the 128-d dlib descriptor as DESCRIPTOR_BYTES of little-endian float32;
    others: b"".
    """

    face_key: str
    ref: str
    descriptor: bytes


@dataclass(frozen=True)
class IndexedBatch:
    """Stored photo faces passed back into `search_selfie()`, in batches (bounded memory).

    Face i belongs to `subjects[i]` (the caller's id, "photo-12"), has `refs[i]` and, for the local
    backend, the i-th DESCRIPTOR_BYTES slice of `descriptors` (b"" for the other backends).
    """

    subjects: Sequence[str]
    refs: Sequence[str]
    descriptors: bytes


@dataclass(frozen=True)
class IndexTarget:
    """Where a photo's faces go for find me: the event's photo collection and the photo's
    subject ("photo-12")."""

    collection: str
    subject: str


@dataclass(frozen=True, eq=False)
class PhotoAnalysis:
    """A photo analysed once by `analyse_photo()`: what `match_photo()` and `index_photo()` take.

    `faces`: the faces kept for matching (the largest DROPIN_MAX_FACES_PER_PHOTO, in reading
    order, keys stable for the same bytes). `index`: the target it was analysed for, or None
    (the photo is indexed already; `index_photo()` refuses such an analysis). Each backend
    subclasses it with what its match and index need (descriptors, identities, the decoded
    picture and FaceIds) and accepts only its own. Held in memory for one job, never stored.
    """

    backend: str
    faces: list[PhotoFace]
    index: IndexTarget | None

    def stored_refs(self) -> list[str]:
        """Refs the backend stored while analysing (Rekognition: the FaceIds IndexFaces added to
        the photo collection). The caller stores them (through `index_photo()`) or has them
        forgotten; [] for backends that store nothing."""
        return []


@dataclass(frozen=True)
class SubjectMatch:
    """A subject with a face resembling the selfie; `similarity` is its best face's, 0..1."""

    subject: str
    similarity: float


class FaceRejected(Exception):
    """The image is unusable as a selfie (or, for search, as a photo): a 4xx for the caller."""


class NoFaceFound(FaceRejected):
    """No usable face in the selfie."""


class SeveralFaces(FaceRejected):
    """More than one face in the selfie: we cannot tell which one is the attendee."""


class UnreadableImage(FaceRejected):
    """The bytes are not an image we can decode (also raised by `analyse_photo()`)."""


class FaceBackendUnavailable(Exception):
    """Transient failure (network, throttling, 5xx): the caller retries later."""


class FaceBackend(Protocol):
    """What the drop-in services call. Implementations must be safe to share between threads."""

    name: str

    def enroll(self, *, collection: str, subject: str, image: bytes) -> EnrolledFace:
        """Enrol the single face of a selfie.

        Raises NoFaceFound, SeveralFaces, UnreadableImage or FaceBackendUnavailable.
        """
        ...

    def forget(self, *, collection: str, refs: Sequence[str], subjects: Sequence[str] = ()) -> None:
        """Delete the enrolled faces `refs` and every face enrolled under one of `subjects`.

        Forgetting by subject also reaches faces whose ref the caller never stored (an enrolment
        whose answer was lost). Backends that store nothing (local, fake) have nothing to do.
        Idempotent: unknown refs, subjects or collection are fine. Raises FaceBackendUnavailable.
        """
        ...

    def analyse_photo(self, *, image: bytes, index: IndexTarget | None = None) -> PhotoAnalysis:
        """Decode the photo and detect its faces, once; `match_photo()` and `index_photo()` use
        the result and never look at the image again.

        `index`: the caller will index the photo for find me. A backend that stores faces
        (Rekognition) indexes them into `index.collection` now, in the same provider call that
        detects them; not idempotent there: a repeated call indexes the faces again under new
        refs, which never match because `search_selfie()` only accepts refs the caller stored
        (see `PhotoAnalysis.stored_refs()`). None: the photo is indexed already; nothing is
        stored. Raises ValueError (a subject the backend cannot store), UnreadableImage or
        FaceBackendUnavailable.
        """
        ...

    def match_photo(self, *, analysis: PhotoAnalysis, collection: str, enrolled: Sequence[Enrolled]) -> SearchResult:
        """Match the analysed faces against `enrolled` only; `faces` is `analysis.faces`.

        Detects nothing (Rekognition searches each face's crop in `collection`, the event's
        selfie collection). Raises TypeError for another backend's analysis,
        FaceBackendUnavailable.
        """
        ...

    def index_photo(self, *, analysis: PhotoAnalysis) -> list[IndexedFace]:
        """The analysed photo's faces as the caller stores them for find me, in reading order with
        distinct keys ([] for a photo of nobody); at most DROPIN_MAX_FACES_PER_PHOTO. No provider
        call. Raises ValueError for an analysis made without `index`, TypeError for another
        backend's.
        """
        ...

    def search_selfie(self, *, collection: str, image: bytes, indexed: Iterable[IndexedBatch]) -> list[SubjectMatch]:
        """Subjects of `indexed` with a face resembling the selfie's single face, best first.

        One entry per subject (its best face), only at/above the match threshold. The selfie is
        checked (and, at Rekognition, searched) before `indexed` is consumed; nothing of it is
        stored or logged. Raises NoFaceFound, SeveralFaces, UnreadableImage or
        FaceBackendUnavailable.
        """
        ...


_backends: dict[str, FaceBackend] = {}
_backends_lock = threading.Lock()


def get_backend(name: str | None = None) -> FaceBackend:
    """Return the process-wide backend instance for `name` (default: settings.DROPIN_FACE_BACKEND).

    Instances are cached per name because the local backend holds loaded dlib models.
    Raises ValueError for an unknown name. Importing a backend's heavy dependencies (dlib, boto3)
    happens here, on first use, not when this module is imported.
    """
    resolved = name if name is not None else getattr(settings, "DROPIN_FACE_BACKEND", "local")
    if resolved not in BACKEND_NAMES:
        raise ValueError(f"unknown face backend {resolved!r}; expected one of {', '.join(BACKEND_NAMES)}")
    backend = _backends.get(resolved)
    if backend is not None:
        return backend
    with _backends_lock:
        backend = _backends.get(resolved)
        if backend is None:
            backend = _build_backend(resolved)
            _backends[resolved] = backend
    return backend


def _build_backend(name: str) -> FaceBackend:
    if name == "fake":
        from apps.dropin.faces.fake import FakeFaceBackend

        return FakeFaceBackend()
    if name == "local":
        from apps.dropin.faces.local import LocalFaceBackend

        return LocalFaceBackend()
    from apps.dropin.faces.rekognition import RekognitionFaceBackend

    return RekognitionFaceBackend()


# --- helpers shared by the backends -------------------------------------------------------------


def own_analysis(analysis: PhotoAnalysis, kind: type[A]) -> A:
    """`analysis` as the calling backend's own kind. Raises TypeError for another backend's."""
    if not isinstance(analysis, kind):
        raise TypeError(f"a {analysis.backend!r} analysis cannot be used by {kind.__name__}")
    return analysis


def index_target(analysis: PhotoAnalysis) -> IndexTarget:
    """The target `analysis` was made for. Raises ValueError if it was made without `index`."""
    if analysis.index is None:
        raise ValueError("the photo was analysed without an index target: it is not to be indexed")
    return analysis.index


def max_faces_per_photo() -> int:
    """DROPIN_MAX_FACES_PER_PHOTO: only this many faces of a photo, the largest, are searched."""
    return int(getattr(settings, "DROPIN_MAX_FACES_PER_PHOTO", DEFAULT_MAX_FACES_PER_PHOTO))


def match_threshold(default: float) -> float:
    """DROPIN_MATCH_THRESHOLD (0..1) if set, else the backend's own calibrated `default`."""
    value = getattr(settings, "DROPIN_MATCH_THRESHOLD", None)
    return default if value is None else float(value)


def box_key(box: Box) -> str:
    """A face key derived from its box, e.g. "x12y40w80h80"."""
    return f"x{box.left}y{box.top}w{box.width}h{box.height}"


def reading_order(box: Box) -> tuple[int, int, int, int]:
    """Sort key putting boxes top-to-bottom, then left-to-right."""
    return (box.top, box.left, box.width, box.height)


def photo_faces(boxes: Iterable[Box]) -> list[PhotoFace]:
    """Faces keyed by their boxes, in the given order; a repeated box gets a "-<n>" suffix.

    Deterministic for the same boxes in the same order, so the same bytes give the same keys.
    """
    faces: list[PhotoFace] = []
    seen: dict[str, int] = {}
    for box in boxes:
        key = box_key(box)
        count = seen.get(key, 0)
        seen[key] = count + 1
        faces.append(PhotoFace(face_key=key if count == 0 else f"{key}-{count}", box=box))
    return faces


def largest(items: Sequence[T], limit: int, box_of: Callable[[T], Box]) -> list[T]:
    """The `limit` items with the largest boxes by area (ties broken by position: stable choice)."""
    ranked = sorted(items, key=lambda item: (-box_of(item).width * box_of(item).height, reading_order(box_of(item))))
    return ranked[: max(limit, 0)]


def best_per_subject(candidates: Iterable[FaceMatch]) -> list[FaceMatch]:
    """Keep the highest similarity per (face_key, subject), ordered by face_key then subject."""
    best: dict[tuple[str, str], FaceMatch] = {}
    for match in candidates:
        key = (match.face_key, match.subject)
        current = best.get(key)
        if current is None or match.similarity > current.similarity:
            best[key] = match
    return [best[key] for key in sorted(best)]


def best_subjects(candidates: Iterable[SubjectMatch]) -> list[SubjectMatch]:
    """Keep the highest similarity per subject, best first (ties by subject: a stable order)."""
    best: dict[str, SubjectMatch] = {}
    for match in candidates:
        current = best.get(match.subject)
        if current is None or match.similarity > current.similarity:
            best[match.subject] = match
    return sorted(best.values(), key=lambda match: (-match.similarity, match.subject))


@dataclass(frozen=True)
class Picture:
    """A decoded image as displayed (EXIF orientation applied, RGB), possibly downscaled.

    `full_size` is the displayed size before downscaling; boxes are reported in that space.
    `source_format` is Pillow's name for the encoded format ("JPEG", "PNG", ...) and
    `reoriented` says whether an EXIF orientation other than "normal" was applied.
    """

    image: Image.Image
    full_size: tuple[int, int]
    source_format: str | None
    reoriented: bool

    def to_full(self, left: float, top: float, right: float, bottom: float) -> Box:
        """Map a rectangle in `image` pixels to a Box in full-size pixels, clipped to the image."""
        full_w, full_h = self.full_size
        sx, sy = full_w / self.image.width, full_h / self.image.height
        x0, y0 = max(0, round(left * sx)), max(0, round(top * sy))
        x1, y1 = min(full_w, round(right * sx)), min(full_h, round(bottom * sy))
        return Box(left=x0, top=y0, width=max(x1 - x0, 0), height=max(y1 - y0, 0))


def load_picture(image: bytes, *, max_side: int | None = None) -> Picture:
    """Decode `image` as displayed, downscaled so its longer side is at most `max_side`.

    JPEGs are decoded at a reduced DCT scale when that is enough (much cheaper for 24 MP
    photos). Raises UnreadableImage for bytes that are not a decodable image, truncated files,
    malformed EXIF and decompression bombs (Pillow's hard limit, 2 x MAX_IMAGE_PIXELS, ~179 MP,
    so 100 MP medium-format photos still pass).
    """
    try:
        img = Image.open(io.BytesIO(image))
        source_format, stored_size = img.format, img.size
        if max_side is not None and source_format == "JPEG":
            img.draft("RGB", (max_side, max_side))
        img.load()
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        reoriented = orientation in range(2, 9)
        # Not ImageOps.exif_transpose: it writes the EXIF back, which raises for a tag Pillow
        # reads but cannot write (a number stored as text, as some cameras do).
        oriented = upright(img, orientation) if reoriented else img
        rgb = oriented if oriented.mode == "RGB" else narrow_grey(oriented).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data inside a known format
        raise UnreadableImage(f"corrupt image: {exc}") from exc
    # Orientations 5-8 swap the axes; a square image looks the same either way.
    swapped = oriented.size != img.size
    full_size = (stored_size[1], stored_size[0]) if swapped else stored_size
    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        target = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return Picture(image=rgb, full_size=full_size, source_format=source_format, reoriented=reoriented)


def open_image(image: bytes) -> Image.Image:
    """Decode bytes fully with Pillow, without applying orientation; for metadata reads.

    Raises UnreadableImage like `load_picture()`.
    """
    try:
        img = Image.open(io.BytesIO(image))
        img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"corrupt image: {exc}") from exc
    return img
