"""Face detection and matching backends for drop-in: `get_backend()` and the shared contract.

Backends: "local" (dlib, offline, default), "rekognition" (AWS, production), "fake" (tests and
ML-free demos). Heavy dependencies are imported only when a backend is first built.
"""

from apps.dropin.faces.base import (
    BACKEND_NAMES,
    Box,
    Enrolled,
    EnrolledFace,
    FaceBackend,
    FaceBackendUnavailable,
    FaceMatch,
    FaceRejected,
    IndexedBatch,
    IndexedFace,
    IndexTarget,
    NoFaceFound,
    PhotoAnalysis,
    PhotoFace,
    SearchResult,
    SeveralFaces,
    SubjectMatch,
    UnreadableImage,
    get_backend,
)

__all__ = [
    "BACKEND_NAMES",
    "Box",
    "Enrolled",
    "EnrolledFace",
    "FaceBackend",
    "FaceBackendUnavailable",
    "FaceMatch",
    "FaceRejected",
    "IndexTarget",
    "IndexedBatch",
    "IndexedFace",
    "NoFaceFound",
    "PhotoAnalysis",
    "PhotoFace",
    "SearchResult",
    "SeveralFaces",
    "SubjectMatch",
    "UnreadableImage",
    "get_backend",
]
