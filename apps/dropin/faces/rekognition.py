"""AWS Rekognition face backend (production).

One Rekognition collection per `collection` name; a face's ref is its FaceId and its
ExternalImageId is the caller's subject. Credentials come from the usual AWS chain (env,
profile, instance/task role); the region from AWS_REGION. botocore retries a throttled call at
most twice (standard mode) before we raise FaceBackendUnavailable and the caller's task retries.

Images: Rekognition takes JPEG or PNG up to 5 MB and honours EXIF orientation only for JPEG.
Bytes that are already a JPEG/PNG under the limit with no orientation tag are sent as they
are; anything else (WebP, rotated, too large) is re-encoded as the displayed image (decoded at
most 4096 px on its longer side), JPEG q90, downscaled further until it fits. Rekognition's
boxes are ratios, reported to the caller in pixels of the displayed original.

enroll: first the faces already indexed under the subject are deleted (ListFaces scan, see
below), so a retried enrolment (IndexFaces succeeded at AWS but its answer was lost, or the
worker died before the caller stored the FaceId) leaves exactly one face for the subject. If
ListFaces says the collection does not exist, it is created and nothing is scanned. Then a
single IndexFaces call (MaxFaces=1, QualityFilter=AUTO). Rekognition indexes the
largest face that passes its quality filter and lists the others in UnindexedFaces; a face
listed only for EXCEEDS_MAX_FACES passed the quality filter, and if it is at least
COMPETING_FACE_RATIO of the indexed face's width the selfie is ambiguous: the indexed face is
deleted again and SeveralFaces raised (FaceBackendUnavailable if that delete fails passingly,
so the enrolment is retried rather than rejected with the face still indexed). This is more
accurate than counting DetectFaces boxes (small, blurred bystanders in the background do not
reject a good selfie) and costs one call.
No face passing the filter raises NoFaceFound. A collection that disappears between ListFaces
and IndexFaces is created, then IndexFaces is retried once.

forget: deletes the given FaceIds plus every face whose ExternalImageId is one of `subjects`,
so a face indexed by an enrolment whose FaceId was never stored is deleted too. DeleteFaces
takes at most 4096 FaceIds per call. A missing collection means there is nothing to delete.

Cost of the subject scan: Rekognition cannot filter ListFaces by ExternalImageId, so finding a
subject's faces pages through the whole collection, MaxResults=4096: one ListFaces request per
4096 faces in the event's collection, per enrolment and per forget that names subjects (an
event of 10 000 enrolled faces: 3 pages each). forget with refs only does no scan.

A photo (drop-in job, backfill) is analysed by one provider call: when it is to be indexed for
find me, IndexFaces into the event's photo collection (ExternalImageId = the photo's subject,
MaxFaces = DROPIN_MAX_FACES_PER_PHOTO up to Rekognition's 100, QualityFilter=AUTO; the
collection is created on first use). Its FaceRecords are the faces indexed (their FaceIds are
what `index_photo()` returns) and FaceRecords plus UnindexedFaces are every face it detected
(IndexFaces reports the faces it did not index, with their boxes), which is what DetectFaces
would have returned: those are the faces matched. A photo indexed already is analysed by one
DetectFaces. Either way the photo is decoded once here and detected once at AWS.

match: one SearchFacesByImage per analysed face (the largest DROPIN_MAX_FACES_PER_PHOTO) on a
padded crop, in the event's selfie collection. SearchFaces by FaceId cannot replace it: it
searches only the collection the FaceId belongs to, and the photo's faces live in the photo
collection, apart from the selfies (which keeps find me's selfie searches free of enrolments and
drop-in's searches free of a popular guest's hundreds of photo faces). Only FaceIds present in
`enrolled` can match, so a face whose forget() has not gone through yet never produces a match.
Similarity is Rekognition's percent / 100; the API is asked for matches at or above
DROPIN_REKOGNITION_FACE_MATCH_THRESHOLD (default 90.0 %), and DROPIN_MATCH_THRESHOLD (default:
that value / 100) filters the result, so the stricter of the two applies.

Find me: a selfie is one DetectFaces (exactly one face, the enrolment's rule) and one
SearchFacesByImage of the whole selfie (Rekognition searches its largest face) in the photo
collection for up to 4096 faces at the drop-in thresholds. Only FaceIds the caller stored count,
so faces indexed again by a retried job (new FaceIds, never stored; the caller asks for them to
be forgotten) cannot produce hits. The selfie is sent to these two calls and kept nowhere.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from PIL import Image

from apps.dropin.faces.base import (
    COMPETING_FACE_RATIO,
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
    Picture,
    SearchResult,
    SeveralFaces,
    SubjectMatch,
    UnreadableImage,
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

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Rekognition's limit for Image.Bytes
DEFAULT_REGION = "eu-west-1"
DEFAULT_FACE_MATCH_THRESHOLD = 90.0  # percent, Rekognition's own scale
CROP_PADDING = 0.25  # of the box's width/height on each side: SearchFacesByImage re-detects the face
CROP_MAX_SIDE = 1024  # plenty for recognition; keeps uploads small
# Photos are decoded at most this large (JPEG DCT scaling): enough for crops and re-encodes, and
# it bounds memory for 100 MP originals.
WORKING_MAX_SIDE = 4096
SEARCH_MAX_MATCHES = 100  # stale faces of the same person must not crowd out an enrolled one
DELETE_BATCH = 4096  # DeleteFaces accepts at most this many FaceIds
LIST_PAGE = 4096  # ListFaces' largest MaxResults
INDEX_MAX_FACES = 100  # IndexFaces indexes at most this many faces of an image
SELFIE_MAX_MATCHES = 4096  # SearchFacesByImage's largest MaxFaces
_EXTERNAL_IMAGE_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,255}")
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "ServiceUnavailableException",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_IMAGE_CODES = frozenset({"InvalidImageFormatException", "ImageTooLargeException"})


@contextmanager
def _translated_errors(operation: str) -> Iterator[None]:
    """Turn transient AWS failures into FaceBackendUnavailable and image errors into UnreadableImage."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or status >= 500:
            raise FaceBackendUnavailable(f"{operation}: {code or status}") from exc
        if code in _IMAGE_CODES:
            raise UnreadableImage(f"{operation}: {code}") from exc
        raise
    except (BotoConnectionError, HTTPClientError) as exc:  # endpoint unreachable, timeouts, resets
        raise FaceBackendUnavailable(f"{operation}: {exc}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _jpeg(img: Image.Image, *, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def rekognition_payload(image: bytes, picture: Picture) -> bytes:
    """Bytes Rekognition will read as `picture` displays: the original if usable, else a JPEG."""
    # Rekognition's boxes are ratios, so they hold for the original and for `picture` alike.
    if picture.source_format in ("JPEG", "PNG") and not picture.reoriented and len(image) <= MAX_IMAGE_BYTES:
        return image
    img = picture.image
    payload = _jpeg(img)
    while len(payload) > MAX_IMAGE_BYTES:
        # JPEG size is roughly proportional to the pixel count; undershoot a little.
        scale = (MAX_IMAGE_BYTES / len(payload)) ** 0.5 * 0.9
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.Resampling.LANCZOS)
        payload = _jpeg(img)
    return payload


def _ratio_box(picture: Picture, bounding_box: Mapping[str, float]) -> Box:
    """Rekognition's BoundingBox (ratios, may spill outside 0..1) to full-size displayed pixels."""
    width, height = picture.image.size
    left = bounding_box.get("Left", 0.0) * width
    top = bounding_box.get("Top", 0.0) * height
    right = left + bounding_box.get("Width", 0.0) * width
    bottom = top + bounding_box.get("Height", 0.0) * height
    return picture.to_full(left, top, right, bottom)


def _indexed_faces(picture: Picture, records: Sequence[Mapping[str, Any]]) -> list[IndexedFace]:
    """IndexFaces' FaceRecords as IndexedFaces keyed by their pixel boxes, in reading order."""
    indexed = [
        (_ratio_box(picture, record["Face"].get("BoundingBox", {})), record["Face"]["FaceId"])
        for record in records
        if record.get("Face", {}).get("FaceId")
    ]
    indexed = sorted(
        [(box, face_id) for box, face_id in indexed if box.width > 0 and box.height > 0],
        key=lambda item: reading_order(item[0]),
    )
    faces = photo_faces(box for box, _ in indexed)
    return [
        IndexedFace(face_key=face.face_key, ref=face_id, descriptor=b"")
        for face, (_, face_id) in zip(faces, indexed, strict=True)
    ]


def face_crop(picture: Picture, box: Box) -> bytes:
    """JPEG of `box` padded by CROP_PADDING on each side, clipped to the image, longer side <= CROP_MAX_SIDE."""
    full_w, full_h = picture.full_size
    sx, sy = picture.image.width / full_w, picture.image.height / full_h
    pad_x, pad_y = box.width * CROP_PADDING, box.height * CROP_PADDING
    area = (
        max(0, round((box.left - pad_x) * sx)),
        max(0, round((box.top - pad_y) * sy)),
        min(picture.image.width, round((box.left + box.width + pad_x) * sx)),
        min(picture.image.height, round((box.top + box.height + pad_y) * sy)),
    )
    crop = picture.image.crop(area)
    if max(crop.size) > CROP_MAX_SIDE:
        crop.thumbnail((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.LANCZOS)
    return _jpeg(crop)


@dataclass(frozen=True, eq=False)
class RekognitionAnalysis(PhotoAnalysis):
    """The decoded photo (for the face crops) and, when analysed for indexing, the faces IndexFaces
    indexed with their FaceIds (None otherwise)."""

    picture: Picture
    indexed: list[IndexedFace] | None

    def stored_refs(self) -> list[str]:
        return [face.ref for face in self.indexed or []]


class RekognitionFaceBackend:
    """Thread-safe: the boto3 client is created once under a lock and shared (clients are thread-safe)."""

    name = "rekognition"

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = boto3.session.Session().client(
                        "rekognition",
                        region_name=getattr(settings, "AWS_REGION", DEFAULT_REGION),
                        config=Config(
                            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
                        ),
                    )
        return self._client

    def enroll(self, *, collection: str, subject: str, image: bytes) -> EnrolledFace:
        """Index the selfie's single face with ExternalImageId=subject; see the module docstring.

        Raises ValueError for a subject Rekognition cannot store as ExternalImageId, NoFaceFound,
        SeveralFaces, UnreadableImage or FaceBackendUnavailable.
        """
        if not _EXTERNAL_IMAGE_ID.fullmatch(subject):
            raise ValueError(f"subject {subject!r} is not a valid Rekognition ExternalImageId")
        picture = load_picture(image, max_side=WORKING_MAX_SIDE)
        params = {
            "CollectionId": collection,
            "Image": {"Bytes": rekognition_payload(image, picture)},
            "ExternalImageId": subject,
            "MaxFaces": 1,
            "QualityFilter": "AUTO",
            "DetectionAttributes": [],
        }
        # A retried enrolment must not leave the earlier attempt's face behind unreferenced.
        earlier = self._face_ids_of(collection, {subject})
        if earlier is None:
            self._create_collection(collection)
        elif earlier:
            self._delete_faces(collection, sorted(earlier))
            logger.info(
                "dropin.rekognition.earlier_faces_deleted",
                extra={"collection": collection, "subject": subject, "count": len(earlier)},
            )
        response = self._index_faces(collection, params)  # created again if deleted since ListFaces
        records = response.get("FaceRecords", [])
        unindexed = response.get("UnindexedFaces", [])
        if not records:
            reasons = sorted({reason for face in unindexed for reason in face.get("Reasons", [])})
            raise NoFaceFound("No usable face found in the selfie" + (f" ({', '.join(reasons)})." if reasons else "."))
        face = records[0]["Face"]
        min_width = COMPETING_FACE_RATIO * face.get("BoundingBox", {}).get("Width", 0.0)
        competitors = [
            other
            for other in unindexed
            if set(other.get("Reasons", [])) == {"EXCEEDS_MAX_FACES"}
            and other.get("FaceDetail", {}).get("BoundingBox", {}).get("Width", 0.0) >= min_width
        ]
        if competitors:
            self._undo_index(collection, face["FaceId"])
            raise SeveralFaces(f"{len(competitors) + 1} faces in the selfie; it must show one person.")
        return EnrolledFace(ref=face["FaceId"], embedding=())

    def forget(self, *, collection: str, refs: Sequence[str], subjects: Sequence[str] = ()) -> None:
        """Delete the faces `refs` and every face indexed under one of `subjects`; idempotent.

        Naming subjects scans the collection (ListFaces, see the module docstring). A missing
        collection means there is nothing to delete. Raises FaceBackendUnavailable.
        """
        face_ids = {ref for ref in refs if ref}
        wanted = {subject for subject in subjects if subject}
        if wanted:
            found = self._face_ids_of(collection, wanted)
            if found is None:
                return
            face_ids |= found
        self._delete_faces(collection, sorted(face_ids))

    def analyse_photo(self, *, image: bytes, index: IndexTarget | None = None) -> RekognitionAnalysis:
        """IndexFaces into `index.collection` (or, without `index`, DetectFaces): one call that
        detects every face; see the module docstring. Faces are keyed by their pixel boxes, in
        reading order.

        Raises ValueError for a subject Rekognition cannot store, UnreadableImage or
        FaceBackendUnavailable.
        """
        if index is not None and not _EXTERNAL_IMAGE_ID.fullmatch(index.subject):
            raise ValueError(f"subject {index.subject!r} is not a valid Rekognition ExternalImageId")
        picture = load_picture(image, max_side=WORKING_MAX_SIDE)
        payload = rekognition_payload(image, picture)
        indexed: list[IndexedFace] | None = None
        if index is None:
            with _translated_errors("DetectFaces"):
                details = self.client.detect_faces(Image={"Bytes": payload}, Attributes=["DEFAULT"]).get(
                    "FaceDetails", []
                )
            detected = [_ratio_box(picture, detail.get("BoundingBox", {})) for detail in details]
        else:
            response = self._index_faces(
                index.collection,
                {
                    "CollectionId": index.collection,
                    "Image": {"Bytes": payload},
                    "ExternalImageId": index.subject,
                    "MaxFaces": max(1, min(max_faces_per_photo(), INDEX_MAX_FACES)),
                    "QualityFilter": "AUTO",
                    "DetectionAttributes": [],
                },
            )
            records = response.get("FaceRecords", [])
            indexed = _indexed_faces(picture, records)
            detected = [_ratio_box(picture, record.get("Face", {}).get("BoundingBox", {})) for record in records]
            detected += [
                _ratio_box(picture, face.get("FaceDetail", {}).get("BoundingBox", {}))
                for face in response.get("UnindexedFaces", [])
            ]
        boxes = [box for box in detected if box.width > 0 and box.height > 0]
        chosen = sorted(largest(boxes, max_faces_per_photo(), lambda box: box), key=reading_order)
        return RekognitionAnalysis(
            backend=self.name, faces=photo_faces(chosen), index=index, picture=picture, indexed=indexed
        )

    def match_photo(self, *, analysis: PhotoAnalysis, collection: str, enrolled: Sequence[Enrolled]) -> SearchResult:
        """SearchFacesByImage per analysed face crop in `collection`; see the module docstring.

        Crops are searched only if some enrolment has a FaceId. `searches` counts
        SearchFacesByImage calls made. Raises TypeError for another backend's analysis,
        FaceBackendUnavailable.
        """
        own = own_analysis(analysis, RekognitionAnalysis)
        faces = list(own.faces)
        by_ref = {entry.ref: entry for entry in enrolled if entry.ref}
        if not by_ref:
            return SearchResult(faces=faces, matches=[], searches=0)

        api_threshold = float(
            getattr(settings, "DROPIN_REKOGNITION_FACE_MATCH_THRESHOLD", DEFAULT_FACE_MATCH_THRESHOLD)
        )
        threshold = match_threshold(api_threshold / 100)
        candidates: list[FaceMatch] = []
        searches = 0
        for face in faces:
            searches += 1
            try:
                with _translated_errors("SearchFacesByImage"):
                    response = self.client.search_faces_by_image(
                        CollectionId=collection,
                        Image={"Bytes": face_crop(own.picture, face.box)},
                        FaceMatchThreshold=api_threshold,
                        MaxFaces=SEARCH_MAX_MATCHES,
                    )
            except ClientError as exc:
                code = _error_code(exc)
                if code == "InvalidParameterException":
                    continue  # "There are no faces in the image": the crop did not re-detect; no match
                if code == "ResourceNotFoundException":
                    break  # no collection yet: nobody was ever indexed, nothing can match
                raise
            for found in response.get("FaceMatches", []):
                entry = by_ref.get(found.get("Face", {}).get("FaceId", ""))
                similarity = float(found.get("Similarity", 0.0)) / 100
                if entry is not None and similarity >= threshold:
                    candidates.append(FaceMatch(face_key=face.face_key, subject=entry.subject, similarity=similarity))
        return SearchResult(faces=faces, matches=best_per_subject(candidates), searches=searches)

    def index_photo(self, *, analysis: PhotoAnalysis) -> list[IndexedFace]:
        """The faces IndexFaces indexed while analysing, with their FaceIds (no call).

        Raises ValueError (analysed without `index`), TypeError (another backend's analysis).
        """
        own = own_analysis(analysis, RekognitionAnalysis)
        index_target(own)
        return list(own.indexed or [])

    def search_selfie(self, *, collection: str, image: bytes, indexed: Iterable[IndexedBatch]) -> list[SubjectMatch]:
        """DetectFaces (exactly one face), then SearchFacesByImage in the photo collection; see
        the module docstring. Raises NoFaceFound, SeveralFaces, UnreadableImage or
        FaceBackendUnavailable.
        """
        picture = load_picture(image, max_side=WORKING_MAX_SIDE)
        payload = rekognition_payload(image, picture)
        with _translated_errors("DetectFaces"):
            details = self.client.detect_faces(Image={"Bytes": payload}, Attributes=["DEFAULT"]).get("FaceDetails", [])
        boxes = [_ratio_box(picture, detail.get("BoundingBox", {})) for detail in details]
        boxes = [box for box in boxes if box.width > 0 and box.height > 0]
        if not boxes:
            raise NoFaceFound("No face found in the selfie.")
        main, *others = largest(boxes, len(boxes), lambda box: box)
        competitors = [box for box in others if box.width >= COMPETING_FACE_RATIO * main.width]
        if competitors:
            raise SeveralFaces(f"{len(competitors) + 1} faces in the selfie; it must show one person.")
        api_threshold = float(
            getattr(settings, "DROPIN_REKOGNITION_FACE_MATCH_THRESHOLD", DEFAULT_FACE_MATCH_THRESHOLD)
        )
        threshold = match_threshold(api_threshold / 100)
        try:
            with _translated_errors("SearchFacesByImage"):
                response = self.client.search_faces_by_image(
                    CollectionId=collection,
                    Image={"Bytes": payload},
                    FaceMatchThreshold=api_threshold,
                    MaxFaces=SELFIE_MAX_MATCHES,
                )
        except ClientError as exc:
            code = _error_code(exc)
            if code == "InvalidParameterException":  # DetectFaces saw a face, the search did not
                raise NoFaceFound("No usable face found in the selfie.") from exc
            if code == "ResourceNotFoundException":
                return []  # no photo of the event indexed yet
            raise
        found: dict[str, float] = {}
        for match in response.get("FaceMatches", []):
            face_id = match.get("Face", {}).get("FaceId", "")
            similarity = float(match.get("Similarity", 0.0)) / 100
            if face_id and similarity >= threshold:
                found[face_id] = max(similarity, found.get(face_id, 0.0))
        if not found:
            return []
        return best_subjects(
            SubjectMatch(subject=subject, similarity=found[ref])
            for batch in indexed
            for subject, ref in zip(batch.subjects, batch.refs, strict=True)
            if ref in found
        )

    # --- internals --------------------------------------------------------------------------------

    def _index_faces(self, collection: str, params: dict[str, Any]) -> Any:
        """IndexFaces; a missing collection is created and the call made once more."""
        try:
            with _translated_errors("IndexFaces"):
                return self.client.index_faces(**params)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
        self._create_collection(collection)
        with _translated_errors("IndexFaces"):
            return self.client.index_faces(**params)

    def _create_collection(self, collection: str) -> None:
        """Create the collection; another worker creating it first is fine."""
        try:
            with _translated_errors("CreateCollection"):
                self.client.create_collection(CollectionId=collection)
        except ClientError as exc:
            if _error_code(exc) != "ResourceAlreadyExistsException":
                raise
        logger.info("dropin.rekognition.collection_created", extra={"collection": collection})

    def _face_ids_of(self, collection: str, subjects: set[str]) -> set[str] | None:
        """FaceIds whose ExternalImageId is in `subjects`, paging through the whole collection
        (ListFaces cannot filter by ExternalImageId); None if the collection does not exist."""
        face_ids: set[str] = set()
        token: str | None = None
        while True:
            params: dict[str, Any] = {"CollectionId": collection, "MaxResults": LIST_PAGE}
            if token:
                params["NextToken"] = token
            try:
                with _translated_errors("ListFaces"):
                    response = self.client.list_faces(**params)
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
            face_ids.update(
                face["FaceId"]
                for face in response.get("Faces", [])
                if face.get("ExternalImageId") in subjects and face.get("FaceId")
            )
            token = response.get("NextToken")
            if not token:
                return face_ids

    def _delete_faces(self, collection: str, face_ids: Sequence[str]) -> None:
        """DeleteFaces in batches of DELETE_BATCH; a missing collection means nothing to delete."""
        for start in range(0, len(face_ids), DELETE_BATCH):
            try:
                with _translated_errors("DeleteFaces"):
                    self.client.delete_faces(
                        CollectionId=collection, FaceIds=list(face_ids[start : start + DELETE_BATCH])
                    )
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return
                raise

    def _undo_index(self, collection: str, face_id: str) -> None:
        """Delete a face indexed from a rejected selfie.

        A passing failure propagates (FaceBackendUnavailable): the selfie is not rejected yet, so
        the enrolment runs again and deletes the subject's earlier faces first (or, out of
        attempts, the face is forgotten by subject); a rejection now would leave the face indexed
        with nothing left to forget it. Any other refusal leaves it in the collection unreferenced
        (it can never match: match_photo() only accepts FaceIds the caller passes in `enrolled`),
        logged so ops can purge it.
        """
        try:
            self._delete_faces(collection, [face_id])
        except ClientError:
            logger.exception("dropin.rekognition.orphan_face", extra={"collection": collection, "face_id": face_id})
