"""Find me at the face backends: `index_photo()` (of an analysis) and `search_selfie()` of fake (metadata), local
(real dlib on the fixture photos) and rekognition (real boto3 client with botocore's Stubber,
which validates every request and response against the service model). No database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber
from PIL import Image

from apps.dropin.faces import (
    FaceBackend,
    FaceBackendUnavailable,
    IndexedBatch,
    IndexedFace,
    IndexTarget,
    NoFaceFound,
    SeveralFaces,
    SubjectMatch,
    UnreadableImage,
)
from apps.dropin.faces.base import DESCRIPTOR_BYTES
from apps.dropin.faces.fake import FakeFaceBackend, fake_face_image
from apps.dropin.faces.local import LocalFaceBackend
from apps.dropin.faces.rekognition import RekognitionFaceBackend
from tests.dropin.test_face_backends import (
    ASTRONAUT_HEAD,
    FACE_ID,
    GARBAGE,
    HOPPER_HEAD,
    IMAGE_ID,
    ORPHAN_FACE_ID,
    OTHER_FACE_ID,
    a_client,
    canvas,
    encode,
    head,
    search,
)


def index(backend: FaceBackend, *, collection: str, subject: str, image: bytes) -> list[IndexedFace]:
    """A photo analysed for indexing and its faces as the caller stores them."""
    return backend.index_photo(analysis=backend.analyse_photo(image=image, index=IndexTarget(collection, subject)))


def batches(indexed: dict[str, list[IndexedFace]], size: int = 2) -> Iterator[IndexedBatch]:
    """The stored faces of each subject as the caller passes them back, `size` faces per batch."""
    rows = [(subject, face) for subject, faces in indexed.items() for face in faces]
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        yield IndexedBatch(
            subjects=[subject for subject, _ in chunk],
            refs=[face.ref for _, face in chunk],
            descriptors=b"".join(face.descriptor for _, face in chunk),
        )


# --- fake -------------------------------------------------------------------------------------------


def test_fake_indexes_every_identity_and_finds_the_selfie_in_photos_showing_it() -> None:
    # given: three photos indexed: Ann alone, Bob and Ann, Bob alone
    backend = FakeFaceBackend()
    photos = {"photo-1": ["ann"], "photo-2": ["bob", "ann"], "photo-3": ["bob"]}
    indexed = {
        subject: index(backend, collection="c", subject=subject, image=fake_face_image(ids, size=(96, 64)))
        for subject, ids in photos.items()
    }
    assert indexed["photo-2"] == [
        IndexedFace(face_key="fake-0-bob", ref="bob", descriptor=b""),
        IndexedFace(face_key="fake-1-ann", ref="ann", descriptor=b""),
    ]
    # when: Ann's selfie is searched
    found = backend.search_selfie(collection="c", image=fake_face_image(["ann"]), indexed=batches(indexed))
    # then: the two photos showing her, once each
    assert found == [SubjectMatch("photo-1", 1.0), SubjectMatch("photo-2", 1.0)]


def test_fake_selfie_rules_and_outage() -> None:
    backend = FakeFaceBackend()
    for image, error in [
        (fake_face_image([]), NoFaceFound),
        (fake_face_image(["ann", "bob"]), SeveralFaces),
        (GARBAGE, UnreadableImage),
        (fake_face_image(["!unavailable"]), FaceBackendUnavailable),
    ]:
        with pytest.raises(error):
            backend.search_selfie(collection="c", image=image, indexed=[])
    with pytest.raises(FaceBackendUnavailable):
        index(backend, collection="c", subject="photo-1", image=fake_face_image(["!unavailable"]))


# --- local (real dlib) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalFaceBackend:
    return LocalFaceBackend()


@pytest.fixture(scope="module")
def event_photos() -> dict[str, bytes]:
    """Three photos of an event: the astronaut alone, Grace Hopper alone, both together."""
    astronaut, hopper = head("astronaut.png", ASTRONAUT_HEAD), head("grace_hopper.jpg", HOPPER_HEAD, 0.55)
    return {
        "photo-1": encode(canvas((900, 500), (astronaut, (300, 120)))),
        "photo-2": encode(canvas((900, 500), (hopper, (200, 100)))),
        "photo-3": encode(canvas((900, 450), (astronaut, (40, 90)), (hopper, (520, 100)))),
    }


def test_local_indexes_descriptors_and_finds_each_person_in_their_photos(
    local: LocalFaceBackend, event_photos: dict[str, bytes]
) -> None:
    # given: the photos indexed (each face with its float32 descriptor)
    indexed = {
        subject: index(local, collection="c", subject=subject, image=image) for subject, image in event_photos.items()
    }
    assert [len(indexed[s]) for s in ("photo-1", "photo-2", "photo-3")] == [1, 1, 2]
    assert all(
        len(face.descriptor) == DESCRIPTOR_BYTES and face.ref == "" for faces in indexed.values() for face in faces
    )
    # when: each person's own selfie (a different picture of them: the original portraits) is searched
    astronaut_selfie = encode(head("astronaut.png", (60, 0, 400, 330)))
    hopper_selfie = encode(Image.open("tests/dropin/fixtures/grace_hopper.jpg").convert("RGB"))
    astronaut_found = local.search_selfie(collection="c", image=astronaut_selfie, indexed=batches(indexed))
    hopper_found = local.search_selfie(collection="c", image=hopper_selfie, indexed=batches(indexed, size=1))
    # then: each finds the photos showing them, and never the other's
    assert sorted(m.subject for m in astronaut_found) == ["photo-1", "photo-3"]
    assert sorted(m.subject for m in hopper_found) == ["photo-2", "photo-3"]
    assert all(0.4 <= m.similarity <= 1.0 for m in astronaut_found + hopper_found)
    assert astronaut_found == sorted(astronaut_found, key=lambda m: -m.similarity)


def test_local_index_gives_the_keys_search_gives_and_a_strict_threshold_finds_nothing(
    local: LocalFaceBackend, event_photos: dict[str, bytes], settings: Any
) -> None:
    # given: a photo analysed once, then matched and indexed from that analysis (as a drop-in job does)
    photo = event_photos["photo-3"]
    analysis = local.analyse_photo(image=photo, index=IndexTarget("c", "photo-3"))
    searched = local.match_photo(analysis=analysis, collection="c", enrolled=[])
    indexed = local.index_photo(analysis=analysis)
    # then: the same faces under the same keys, as a separate analysis of the same bytes gives
    assert [f.face_key for f in searched.faces] == [f.face_key for f in indexed]
    alone = search(local, collection="c", image=photo, enrolled=[])
    assert [f.face_key for f in alone.faces] == [f.face_key for f in indexed]
    # when: the threshold is above any real similarity
    settings.DROPIN_MATCH_THRESHOLD = 0.99
    selfie = encode(head("astronaut.png", (60, 0, 400, 330)))
    # then: nothing is found
    assert local.search_selfie(collection="c", image=selfie, indexed=batches({"photo-3": indexed})) == []


def test_local_selfie_must_show_exactly_one_face(local: LocalFaceBackend, event_photos: dict[str, bytes]) -> None:
    no_face = encode(Image.open("tests/dropin/fixtures/astronaut.png").convert("RGB").crop((330, 0, 512, 300)))
    two = encode(
        canvas(
            (600, 300),
            (head("astronaut.png", ASTRONAUT_HEAD), (20, 15)),
            (head("astronaut.png", ASTRONAUT_HEAD), (330, 15)),
        )
    )
    consumed: list[int] = []

    def never() -> Iterator[IndexedBatch]:
        consumed.append(1)
        yield from ()

    with pytest.raises(NoFaceFound):
        local.search_selfie(collection="c", image=no_face, indexed=never())
    with pytest.raises(SeveralFaces):
        local.search_selfie(collection="c", image=two, indexed=never())
    with pytest.raises(UnreadableImage):
        local.search_selfie(collection="c", image=GARBAGE, indexed=never())
    assert consumed == []  # the stored faces are not even read for an unusable selfie


# --- rekognition (Stubber) -----------------------------------------------------------------------

PHOTO_FACE_ID = "2b7e9c1a-3d4f-4a5b-9c6d-7e8f9a0b1c2d"


@pytest.fixture
def stubbed() -> Iterator[tuple[RekognitionFaceBackend, Stubber, list[str]]]:
    client = a_client()
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.rekognition.*", lambda model, **_: sent.append(model.name))
    with Stubber(client) as stubber:
        yield RekognitionFaceBackend(client=client), stubber, sent
        stubber.assert_no_pending_responses()


def record(face_id: str, left: float, subject: str = "photo-12") -> dict[str, Any]:
    box = {"Width": 0.1, "Height": 0.2, "Left": left, "Top": 0.3}
    return {
        "Face": {
            "FaceId": face_id,
            "BoundingBox": box,
            "ImageId": IMAGE_ID,
            "ExternalImageId": subject,
            "Confidence": 99.8,
        },
        "FaceDetail": {"BoundingBox": box, "Confidence": 99.8},
    }


def face_match(face_id: str, similarity: float, subject: str) -> dict[str, Any]:
    box = {"Width": 0.1, "Height": 0.2, "Left": 0.4, "Top": 0.3}
    return {
        "Similarity": similarity,
        "Face": {
            "FaceId": face_id,
            "BoundingBox": box,
            "ImageId": IMAGE_ID,
            "ExternalImageId": subject,
            "Confidence": 99.0,
        },
    }


PHOTO = encode(Image.new("RGB", (1000, 600), (120, 120, 120)))
SELFIE = encode(Image.new("RGB", (400, 500), (180, 150, 130)))
SELFIE_FACE = {"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.2}, "Confidence": 99.9}
SEARCH_PARAMS = {
    "CollectionId": "ev-1-photos",
    "Image": {"Bytes": SELFIE},
    "FaceMatchThreshold": 90.0,
    "MaxFaces": 4096,
}


def test_rekognition_indexes_a_photo_into_the_photo_collection_creating_it_first(stubbed: Any, settings: Any) -> None:
    # given: no photo collection yet; the photo has two faces
    backend, stubber, sent = stubbed
    settings.DROPIN_MAX_FACES_PER_PHOTO = 50
    params = {
        "CollectionId": "ev-1-photos",
        "Image": {"Bytes": PHOTO},
        "ExternalImageId": "photo-12",
        "MaxFaces": 50,
        "QualityFilter": "AUTO",
        "DetectionAttributes": [],
    }
    stubber.add_client_error("index_faces", "ResourceNotFoundException", "no collection", 400, expected_params=params)
    stubber.add_response(
        "create_collection",
        {
            "StatusCode": 200,
            "CollectionArn": "aws:rekognition:eu-west-1:123456789012:collection/ev-1-photos",
            "FaceModelVersion": "7.0",
        },
        {"CollectionId": "ev-1-photos"},
    )
    stubber.add_response(
        "index_faces",
        {
            "FaceRecords": [record(PHOTO_FACE_ID, 0.6), record(FACE_ID, 0.1)],
            "UnindexedFaces": [],
            "FaceModelVersion": "7.0",
        },
        params,
    )
    # when: the photo is indexed
    faces = index(backend, collection="ev-1-photos", subject="photo-12", image=PHOTO)
    # then: the collection was created, and both faces come back in reading order with their FaceIds
    assert sent == ["IndexFaces", "CreateCollection", "IndexFaces"]
    assert faces == [
        IndexedFace(face_key="x100y180w100h120", ref=FACE_ID, descriptor=b""),
        IndexedFace(face_key="x600y180w100h120", ref=PHOTO_FACE_ID, descriptor=b""),
    ]


def test_rekognition_selfie_search_maps_stored_face_ids_to_photos(stubbed: Any) -> None:
    # given: one face in the selfie; the search finds a stored face of photo-12 twice over (two
    # of its faces), a stored face of photo-13, and a face indexed by a retried job (never stored)
    backend, stubber, sent = stubbed
    stubber.add_response(
        "detect_faces", {"FaceDetails": [SELFIE_FACE]}, {"Image": {"Bytes": SELFIE}, "Attributes": ["DEFAULT"]}
    )
    stubber.add_response(
        "search_faces_by_image",
        {
            "SearchedFaceBoundingBox": SELFIE_FACE["BoundingBox"],
            "SearchedFaceConfidence": 99.9,
            "FaceMatches": [
                face_match(ORPHAN_FACE_ID, 99.9, "photo-12"),
                face_match(FACE_ID, 99.1, "photo-12"),
                face_match(PHOTO_FACE_ID, 97.5, "photo-12"),
                face_match(OTHER_FACE_ID, 93.0, "photo-13"),
            ],
            "FaceModelVersion": "7.0",
        },
        SEARCH_PARAMS,
    )
    stored = [
        IndexedBatch(subjects=["photo-12", "photo-12"], refs=[FACE_ID, PHOTO_FACE_ID], descriptors=b""),
        IndexedBatch(
            subjects=["photo-13", "photo-14"],
            refs=[OTHER_FACE_ID, "8f7e6d5c-4b3a-4291-8a7b-6c5d4e3f2a1b"],
            descriptors=b"",
        ),
    ]
    # when: the selfie is searched
    found = backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=iter(stored))
    # then: each photo once, at its best stored face; the orphan face counts for nothing
    assert [(m.subject, m.similarity) for m in found] == [
        ("photo-12", pytest.approx(0.991)),
        ("photo-13", pytest.approx(0.93)),
    ]
    assert sent == ["DetectFaces", "SearchFacesByImage"]


def test_rekognition_refuses_a_selfie_of_several_people_or_nobody_without_searching(stubbed: Any) -> None:
    backend, stubber, sent = stubbed
    bystander = {"BoundingBox": {"Width": 0.3, "Height": 0.3, "Left": 0.0, "Top": 0.0}, "Confidence": 99.0}
    stubber.add_response("detect_faces", {"FaceDetails": [SELFIE_FACE, bystander]})
    stubber.add_response("detect_faces", {"FaceDetails": []})
    with pytest.raises(SeveralFaces):
        backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=[])
    with pytest.raises(NoFaceFound):
        backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=[])
    assert sent == ["DetectFaces", "DetectFaces"]


def test_rekognition_selfie_search_without_a_collection_or_face_and_when_throttled(stubbed: Any) -> None:
    # given: the event has no photo collection yet; then the search re-detects no face; then throttling
    backend, stubber, _ = stubbed
    errors = [
        ("ResourceNotFoundException", "no collection"),
        ("InvalidParameterException", "There are no faces in the image. Should be at least 1."),
        ("ThrottlingException", "slow down"),
    ]
    for code, message in errors:  # the stubbed calls are answered in order
        stubber.add_response("detect_faces", {"FaceDetails": [SELFIE_FACE]})
        stubber.add_client_error("search_faces_by_image", code, message, 400, expected_params=SEARCH_PARAMS)
    # when / then: nothing found; an unusable selfie; a passing failure
    assert backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=[]) == []
    with pytest.raises(NoFaceFound):
        backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=[])
    with pytest.raises(FaceBackendUnavailable):
        backend.search_selfie(collection="ev-1-photos", image=SELFIE, indexed=[])


def test_rekognition_index_throttled_is_transient_and_a_bad_subject_is_refused(stubbed: Any) -> None:
    backend, stubber, sent = stubbed
    stubber.add_client_error("index_faces", "ProvisionedThroughputExceededException", "slow down", 400)
    with pytest.raises(FaceBackendUnavailable):
        index(backend, collection="ev-1-photos", subject="photo-12", image=PHOTO)
    with pytest.raises(ValueError):
        index(backend, collection="ev-1-photos", subject="photo 12/x", image=PHOTO)
    assert sent == ["IndexFaces"]
