"""Deterministic face backend for tests and ML-free demos.

An image's "faces" are the identities listed in its EXIF ImageDescription (tag 0x010E) as a JSON
array, written by `fake_face_image()`. EXIF is used because Pillow writes and reads it the same
way for PNG (eXIf chunk) and JPEG (APP1), so one code path serves both formats. Any real image
without that tag has no faces.

Semantics mirror the real backends: enrol needs exactly one identity (ref = the identity);
`analyse_photo()` reads a photo's identities once and yields one face per listed identity, in
order, keyed "fake-<index>-<identity>"; `match_photo()` matches enrolled entries whose ref equals
the identity with similarity 1.0, and `index_photo()` gives the same faces with ref = identity.
`search_selfie()` takes a selfie like `enroll()` and matches indexed faces whose ref equals its
identity, with similarity 1.0. The identity UNAVAILABLE ("!unavailable") makes enrol, analyse
and selfie search raise FaceBackendUnavailable, to rehearse outages.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from apps.dropin.faces.base import (
    Box,
    Enrolled,
    EnrolledFace,
    FaceBackendUnavailable,
    FaceMatch,
    IndexedBatch,
    IndexedFace,
    IndexTarget,
    NoFaceFound,
    PhotoAnalysis,
    PhotoFace,
    SearchResult,
    SeveralFaces,
    SubjectMatch,
    best_per_subject,
    best_subjects,
    index_target,
    match_threshold,
    max_faces_per_photo,
    open_image,
    own_analysis,
)

UNAVAILABLE = "!unavailable"
_DESCRIPTION_TAG = 0x010E  # EXIF ImageDescription
_PREFIX = "darkroom-fake-faces:"
# Fake matches are exact (1.0), so any threshold up to 1.0 keeps them.
DEFAULT_THRESHOLD = 0.5


def fake_face_image(
    identities: Sequence[str],
    *,
    size: tuple[int, int] = (64, 48),
    fmt: Literal["PNG", "JPEG"] = "PNG",
) -> bytes:
    """Encode a plain image whose fake faces are `identities` (may be empty: a photo of nobody)."""
    exif = Image.Exif()
    exif[_DESCRIPTION_TAG] = _PREFIX + json.dumps(list(identities))
    buffer = io.BytesIO()
    Image.new("RGB", size, (210, 190, 170)).save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def read_identities(image: bytes) -> tuple[list[str], tuple[int, int]]:
    """Identities written by `fake_face_image()` and the image size; ([], size) for other images.

    Raises UnreadableImage for bytes that are not an image.
    """
    img = open_image(image)
    description = img.getexif().get(_DESCRIPTION_TAG)
    if not isinstance(description, str) or not description.startswith(_PREFIX):
        return [], img.size
    try:
        identities = json.loads(description[len(_PREFIX) :])
    except ValueError:
        return [], img.size
    if not isinstance(identities, list):
        return [], img.size
    return [str(identity) for identity in identities], img.size


@dataclass(frozen=True, eq=False)
class FakeAnalysis(PhotoAnalysis):
    """A photo's faces and the identity of each (`identities[i]` is face i's)."""

    identities: list[str]


class FakeFaceBackend:
    """Stateless and deterministic; `forget()` has nothing to delete."""

    name = "fake"

    def enroll(self, *, collection: str, subject: str, image: bytes) -> EnrolledFace:
        return EnrolledFace(ref=_selfie_identity(image), embedding=())

    def forget(self, *, collection: str, refs: Sequence[str], subjects: Sequence[str] = ()) -> None:
        return None

    def analyse_photo(self, *, image: bytes, index: IndexTarget | None = None) -> FakeAnalysis:
        """Raises UnreadableImage or FaceBackendUnavailable (the outage identity)."""
        identities, faces = _photo_faces(image)
        return FakeAnalysis(backend=self.name, faces=faces, index=index, identities=identities)

    def match_photo(self, *, analysis: PhotoAnalysis, collection: str, enrolled: Sequence[Enrolled]) -> SearchResult:
        own = own_analysis(analysis, FakeAnalysis)
        faces = list(own.faces)
        if not enrolled:
            return SearchResult(faces=faces, matches=[], searches=0)
        threshold = match_threshold(DEFAULT_THRESHOLD)
        candidates = [
            FaceMatch(face_key=face.face_key, subject=entry.subject, similarity=1.0)
            for face, identity in zip(faces, own.identities, strict=True)
            for entry in enrolled
            if entry.ref == identity and 1.0 >= threshold
        ]
        return SearchResult(faces=faces, matches=best_per_subject(candidates), searches=len(faces))

    def index_photo(self, *, analysis: PhotoAnalysis) -> list[IndexedFace]:
        own = own_analysis(analysis, FakeAnalysis)
        index_target(own)
        return [
            IndexedFace(face_key=face.face_key, ref=identity, descriptor=b"")
            for face, identity in zip(own.faces, own.identities, strict=True)
        ]

    def search_selfie(self, *, collection: str, image: bytes, indexed: Iterable[IndexedBatch]) -> list[SubjectMatch]:
        identity = _selfie_identity(image)
        if 1.0 < match_threshold(DEFAULT_THRESHOLD):
            return []
        return best_subjects(
            SubjectMatch(subject=subject, similarity=1.0)
            for batch in indexed
            for subject, ref in zip(batch.subjects, batch.refs, strict=True)
            if ref == identity
        )


def _selfie_identity(image: bytes) -> str:
    """The single identity of a selfie. Raises NoFaceFound, SeveralFaces, UnreadableImage or
    FaceBackendUnavailable (the outage identity)."""
    identities, _ = read_identities(image)
    if UNAVAILABLE in identities:
        raise FaceBackendUnavailable("fake outage")
    if not identities:
        raise NoFaceFound("No face found in the selfie.")
    if len(identities) > 1:
        raise SeveralFaces(f"{len(identities)} faces in the selfie; it must show one person.")
    return identities[0]


def _photo_faces(image: bytes) -> tuple[list[str], list[PhotoFace]]:
    """A photo's identities (the first DROPIN_MAX_FACES_PER_PHOTO) and their faces, one column
    each. Raises UnreadableImage or FaceBackendUnavailable (the outage identity)."""
    identities, (width, height) = read_identities(image)
    if UNAVAILABLE in identities:
        raise FaceBackendUnavailable("fake outage")
    identities = identities[: max_faces_per_photo()]
    column = max(width // max(len(identities), 1), 1)
    faces = [
        PhotoFace(
            face_key=f"fake-{index}-{identity}",
            box=Box(left=index * column, top=0, width=column, height=height),
        )
        for index, identity in enumerate(identities)
    ]
    return identities, faces
