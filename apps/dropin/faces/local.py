"""Offline face backend: dlib's HOG detector and ResNet descriptor, models from PyPI.

dlib comes from the prebuilt `dlib-bin` wheel; the model files ship in the
`face_recognition_models` sdist. That package's `__init__` imports `pkg_resources` (gone from
recent setuptools), so we never import it: its directory is located with `find_spec` and the
`.dat` files are loaded by path.

Pipeline: bytes -> Pillow (EXIF orientation applied, RGB, longer side capped at
DROPIN_LOCAL_MAX_IMAGE_SIDE, default 2000 px, to bound CPU: ~0.6 s of HOG at upsample 1 on a
2000 px photo on one core; a face then needs roughly 40 px in the downscaled image, i.e. 120 px
in a 6000 px original) -> HOG detection (upsample 1) -> 5-point landmarks -> 128-d descriptor.

Matching: dlib's model puts photos of the same person at Euclidean distance < 0.6 (99.38 % on
LFW). Similarity is `1 - distance` clipped to 0..1, so the default threshold 0.4 is exactly
dlib's 0.6 cut; raise DROPIN_MATCH_THRESHOLD (e.g. 0.45-0.5) to trade recall for fewer false
matches. Enrolments without a 128-d embedding (made by another backend) are skipped.

Find me: `index_photo()` returns each kept face's descriptor as 512 bytes of float32 (the
caller stores them in Postgres); `search_selfie()` describes the selfie's single face (the rules
of `enroll()`) and compares it with the stored descriptors batch by batch in numpy (one
vectorised distance per batch, tens of ms per 100,000 faces; reading them from Postgres
dominates, about 1 s for 100,000; the caller bounds how many it passes, FINDME_MAX_FACES).

A photo is detected and described once, by `analyse_photo()`; `match_photo()` compares the
analysis's descriptors with the enrolments and `index_photo()` hands the same descriptors out for
storage, so a drop-in job that matches and indexes a photo runs dlib on it once. Nothing of a
photo or selfie is kept by the backend between calls.

Models load lazily once per backend instance (i.e. per process, via `get_backend`), under a
lock; dlib objects are not documented as thread-safe, so inference is serialised per process.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.dropin.faces.base import (
    COMPETING_FACE_RATIO,
    DESCRIPTOR_BYTES,
    DESCRIPTOR_SIZE,
    Box,
    Enrolled,
    EnrolledFace,
    FaceMatch,
    IndexedBatch,
    IndexedFace,
    IndexTarget,
    NoFaceFound,
    PhotoAnalysis,
    Picture,
    SearchResult,
    SeveralFaces,
    SubjectMatch,
    best_per_subject,
    best_subjects,
    index_target,
    largest,
    load_picture,
    match_threshold,
    max_faces_per_photo,
    own_analysis,
    photo_faces,
    reading_order,
)

DEFAULT_THRESHOLD = 0.4  # similarity = 1 - distance; dlib's same-person cut is distance 0.6
DEFAULT_MAX_IMAGE_SIDE = 2000
STORED_DTYPE = np.dtype("<f4")  # descriptors as stored by the caller (DESCRIPTOR_BYTES each)
UPSAMPLE = 1  # one pyramid doubling: finds faces down to ~40 px

_SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
_RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def models_dir() -> Path:
    """The `models/` directory of the installed face_recognition_models package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "models"
        if (candidate / _RECOGNITION_MODEL).is_file():
            return candidate
    raise ImproperlyConfigured("face_recognition_models is not installed: pip install -r requirements/base.txt")


@dataclass(frozen=True)
class _Models:
    detector: Any
    shape_predictor: Any
    encoder: Any


@dataclass(frozen=True)
class _Face:
    box: Box  # full-size displayed pixels, reported to the caller
    rect: Any  # dlib.rectangle in the working (downscaled) image


@dataclass(frozen=True, eq=False)
class LocalAnalysis(PhotoAnalysis):
    """A photo's kept faces in reading order and their 128-d descriptors (row i: face i)."""

    descriptors: np.ndarray


class LocalFaceBackend:
    """dlib on the local CPU; nothing is stored backend-side, so `forget()` is a no-op."""

    name = "local"

    def __init__(self) -> None:
        self._models: _Models | None = None
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()

    def enroll(self, *, collection: str, subject: str, image: bytes) -> EnrolledFace:
        """Descriptor of the selfie's single face.

        Raises NoFaceFound, SeveralFaces (a second face at least COMPETING_FACE_RATIO of the
        largest one's width) or UnreadableImage.
        """
        descriptor = self._selfie_descriptor(image)
        return EnrolledFace(ref="", embedding=tuple(float(value) for value in descriptor))

    def forget(self, *, collection: str, refs: Sequence[str], subjects: Sequence[str] = ()) -> None:
        return None

    def analyse_photo(self, *, image: bytes, index: IndexTarget | None = None) -> LocalAnalysis:
        """Detect the photo's faces, keep up to DROPIN_MAX_FACES_PER_PHOTO (the largest) and
        describe each one: the only dlib pass over a photo. `index` is only recorded (nothing is
        stored backend-side). Raises UnreadableImage.
        """
        limit = max_faces_per_photo()
        picture = self._picture(image)
        models = self._loaded()
        pixels = np.asarray(picture.image)
        with self._infer_lock:
            detected = self._detect(models, picture, pixels)
            chosen = sorted(largest(detected, limit, lambda face: face.box), key=lambda face: reading_order(face.box))
            descriptors = np.array(
                [self._describe(models, pixels, face.rect) for face in chosen], dtype=np.float64
            ).reshape(-1, DESCRIPTOR_SIZE)
        return LocalAnalysis(
            backend=self.name,
            faces=photo_faces(face.box for face in chosen),
            index=index,
            descriptors=descriptors,
        )

    def match_photo(self, *, analysis: PhotoAnalysis, collection: str, enrolled: Sequence[Enrolled]) -> SearchResult:
        """Compare each analysed face with each enrolment that has a 128-d embedding.

        `searches` is the number of faces compared (0 without a usable enrolment). Raises
        TypeError for another backend's analysis.
        """
        own = own_analysis(analysis, LocalAnalysis)
        usable = [entry for entry in enrolled if len(entry.embedding) == DESCRIPTOR_SIZE]
        faces = list(own.faces)
        if not usable or not faces:
            return SearchResult(faces=faces, matches=[], searches=0)
        known = np.array([entry.embedding for entry in usable], dtype=np.float64)
        # distances[i, j]: photo face i to enrolment j
        distances = np.linalg.norm(own.descriptors[:, None, :] - known[None, :, :], axis=2)
        similarities = np.clip(1.0 - distances, 0.0, 1.0)
        threshold = match_threshold(DEFAULT_THRESHOLD)
        candidates = [
            FaceMatch(face_key=face.face_key, subject=entry.subject, similarity=float(similarities[i, j]))
            for i, face in enumerate(faces)
            for j, entry in enumerate(usable)
            if similarities[i, j] >= threshold
        ]
        return SearchResult(faces=faces, matches=best_per_subject(candidates), searches=len(faces))

    def index_photo(self, *, analysis: PhotoAnalysis) -> list[IndexedFace]:
        """The analysed faces, each with its descriptor as DESCRIPTOR_BYTES of float32.

        Raises ValueError (analysed without `index`), TypeError (another backend's analysis).
        """
        own = own_analysis(analysis, LocalAnalysis)
        index_target(own)
        stored = own.descriptors.astype(STORED_DTYPE)
        return [
            IndexedFace(face_key=face.face_key, ref="", descriptor=stored[i].tobytes())
            for i, face in enumerate(own.faces)
        ]

    def search_selfie(self, *, collection: str, image: bytes, indexed: Iterable[IndexedBatch]) -> list[SubjectMatch]:
        """Compare the selfie's single face with every stored descriptor, one batch at a time.

        Similarity is 1 - Euclidean distance, as for drop-in matches. Raises NoFaceFound,
        SeveralFaces, UnreadableImage; ValueError for a batch whose descriptors do not fit it.
        """
        selfie = self._selfie_descriptor(image)
        threshold = match_threshold(DEFAULT_THRESHOLD)
        candidates: list[SubjectMatch] = []
        for batch in indexed:
            if len(batch.descriptors) != len(batch.subjects) * DESCRIPTOR_BYTES:
                raise ValueError(f"{len(batch.subjects)} subjects but {len(batch.descriptors)} descriptor bytes")
            if not batch.subjects:
                continue
            stored = np.frombuffer(batch.descriptors, dtype=STORED_DTYPE).reshape(-1, DESCRIPTOR_SIZE)
            similarities = np.clip(1.0 - np.linalg.norm(stored - selfie[None, :], axis=1), 0.0, 1.0)
            for i in np.flatnonzero(similarities >= threshold).tolist():
                candidates.append(SubjectMatch(subject=batch.subjects[i], similarity=float(similarities[i])))
        return best_subjects(candidates)

    # --- internals --------------------------------------------------------------------------------

    def _selfie_descriptor(self, image: bytes) -> np.ndarray:
        """Descriptor of a selfie's single face (never cached). Raises NoFaceFound, SeveralFaces
        or UnreadableImage."""
        picture = self._picture(image)
        models = self._loaded()
        pixels = np.asarray(picture.image)
        with self._infer_lock:
            faces = self._detect(models, picture, pixels)
            if not faces:
                raise NoFaceFound("No face found in the selfie.")
            main, *others = largest(faces, len(faces), lambda face: face.box)
            competitors = [face for face in others if face.box.width >= COMPETING_FACE_RATIO * main.box.width]
            if competitors:
                raise SeveralFaces(f"{len(competitors) + 1} faces in the selfie; it must show one person.")
            return self._describe(models, pixels, main.rect)

    def _picture(self, image: bytes) -> Picture:
        max_side = int(getattr(settings, "DROPIN_LOCAL_MAX_IMAGE_SIDE", DEFAULT_MAX_IMAGE_SIDE))
        return load_picture(image, max_side=max_side)

    def _loaded(self) -> _Models:
        models = self._models
        if models is not None:
            return models
        with self._load_lock:
            if self._models is None:
                directory = models_dir()
                self._models = _Models(
                    detector=dlib.get_frontal_face_detector(),
                    shape_predictor=dlib.shape_predictor(str(directory / _SHAPE_PREDICTOR)),
                    encoder=dlib.face_recognition_model_v1(str(directory / _RECOGNITION_MODEL)),
                )
            return self._models

    @staticmethod
    def _detect(models: _Models, picture: Picture, pixels: np.ndarray) -> list[_Face]:
        """Faces in the working image; caller holds the inference lock."""
        faces = []
        for rect in models.detector(pixels, UPSAMPLE):
            box = picture.to_full(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            if box.width > 0 and box.height > 0:
                faces.append(_Face(box=box, rect=rect))
        return faces

    @staticmethod
    def _describe(models: _Models, pixels: np.ndarray, rect: Any) -> np.ndarray:
        """128-d descriptor of the face in `rect`; caller holds the inference lock."""
        shape = models.shape_predictor(pixels, rect)
        return np.asarray(models.encoder.compute_face_descriptor(pixels, shape), dtype=np.float64)
