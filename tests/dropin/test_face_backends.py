"""Face backends: fake (metadata), local (real dlib on real photos), rekognition (real boto3 client
with botocore's Stubber, which validates every request and response against the service model).

No database: these tests exercise the backends alone. Fixture photos: see fixtures/README.txt.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from PIL import Image

from apps.dropin.faces import (
    Box,
    Enrolled,
    FaceBackend,
    FaceBackendUnavailable,
    NoFaceFound,
    SearchResult,
    SeveralFaces,
    UnreadableImage,
    get_backend,
)
from apps.dropin.faces.fake import FakeFaceBackend, fake_face_image
from apps.dropin.faces.local import DESCRIPTOR_SIZE, LocalFaceBackend
from apps.dropin.faces.rekognition import MAX_IMAGE_BYTES, RekognitionFaceBackend

FIXTURES = Path(__file__).parent / "fixtures"
GARBAGE = b"this is not an image, just some bytes" * 10
# Eileen Collins' head in astronaut.png (the crop leaves out a mission patch HOG mistakes for a face).
ASTRONAUT_HEAD = (95, 0, 345, 270)
HOPPER_HEAD = (120, 40, 430, 380)


# --- image helpers ---------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def head(name: str, area: tuple[int, int, int, int], scale: float = 1.0) -> Image.Image:
    img = Image.open(FIXTURES / name).convert("RGB").crop(area)
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img


def canvas(size: tuple[int, int], *pastes: tuple[Image.Image, tuple[int, int]]) -> Image.Image:
    """A plain grey-blue backdrop with the given images pasted at the given positions."""
    img = Image.new("RGB", size, (118, 128, 140))
    for piece, position in pastes:
        img.paste(piece, position)
    return img


def centre(box: Box) -> tuple[float, float]:
    return (box.left + box.width / 2, box.top + box.height / 2)


def near(a: tuple[float, float], b: tuple[float, float], tolerance: float) -> bool:
    return abs(a[0] - b[0]) <= tolerance and abs(a[1] - b[1]) <= tolerance


def search(backend: FaceBackend, *, collection: str, image: bytes, enrolled: Sequence[Enrolled]) -> SearchResult:
    """A photo analysed (not for indexing: no provider call stores anything) and matched."""
    return backend.match_photo(analysis=backend.analyse_photo(image=image), collection=collection, enrolled=enrolled)


def matched(result: SearchResult) -> set[tuple[str, str]]:
    return {(m.face_key, m.subject) for m in result.matches}


# --- get_backend -------------------------------------------------------------------------------------


def test_get_backend_reads_the_setting_caches_instances_and_rejects_unknown_names(settings: Any) -> None:
    # given: the fake backend configured
    settings.DROPIN_FACE_BACKEND = "fake"
    # when: asked for the default backend twice, and for unknown names
    first, second = get_backend(), get_backend("fake")
    # then: one cached FakeFaceBackend; unknown names are refused
    assert isinstance(first, FakeFaceBackend) and first is second and first.name == "fake"
    with pytest.raises(ValueError, match="unknown face backend"):
        get_backend("dlib")
    settings.DROPIN_FACE_BACKEND = "nope"
    with pytest.raises(ValueError):
        get_backend()


# --- fake --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fake_enrols_the_single_identity_and_refuses_zero_or_several(fmt: Literal["PNG", "JPEG"]) -> None:
    # given: the fake backend and selfies showing one, no and two identities
    backend = FakeFaceBackend()
    # when / then: one identity is enrolled with ref = identity; the others are rejected
    enrolled = backend.enroll(collection="ev-1", subject="face-1", image=fake_face_image(["alice"], fmt=fmt))
    assert (enrolled.ref, enrolled.embedding) == ("alice", ())
    with pytest.raises(NoFaceFound):
        backend.enroll(collection="ev-1", subject="face-2", image=fake_face_image([], fmt=fmt))
    with pytest.raises(SeveralFaces):
        backend.enroll(collection="ev-1", subject="face-3", image=fake_face_image(["alice", "bob"], fmt=fmt))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fake_search_finds_every_identity_and_matches_only_enrolled_refs(fmt: Literal["PNG", "JPEG"]) -> None:
    # given: alice enrolled twice (two selfies) and carol enrolled; a photo of alice and bob
    backend = FakeFaceBackend()
    enrolled = [
        Enrolled(subject="face-1", ref="alice", embedding=()),
        Enrolled(subject="face-1", ref="alice", embedding=()),
        Enrolled(subject="face-3", ref="carol", embedding=()),
    ]
    photo = fake_face_image(["alice", "bob"], size=(96, 64), fmt=fmt)
    # when: the photo is searched twice
    result = search(backend, collection="ev-1", image=photo, enrolled=enrolled)
    again = search(backend, collection="ev-1", image=photo, enrolled=enrolled)
    # then: two faces with stable distinct keys, alice matched once at 1.0, both faces billed
    assert [f.face_key for f in result.faces] == ["fake-0-alice", "fake-1-bob"]
    assert [f.box for f in result.faces] == [Box(0, 0, 48, 64), Box(48, 0, 48, 64)]
    assert [(m.face_key, m.subject, m.similarity) for m in result.matches] == [("fake-0-alice", "face-1", 1.0)]
    assert result.searches == 2
    assert again == result


def test_fake_sees_no_face_in_real_photos_and_rejects_bytes_that_are_not_images() -> None:
    # given: a real photo without fake metadata, and garbage bytes
    backend = FakeFaceBackend()
    photo = (FIXTURES / "astronaut.png").read_bytes()
    # when / then: no faces, nothing searched; garbage is unreadable for enrol and search
    assert search(backend, collection="c", image=photo, enrolled=[Enrolled("face-1", "alice", ())]) == SearchResult(
        faces=[], matches=[], searches=0
    )
    with pytest.raises(NoFaceFound):
        backend.enroll(collection="c", subject="face-1", image=photo)
    with pytest.raises(UnreadableImage):
        backend.enroll(collection="c", subject="face-1", image=GARBAGE)
    with pytest.raises(UnreadableImage):
        search(backend, collection="c", image=GARBAGE, enrolled=[])


def test_fake_outage_hook_and_face_cap(settings: Any) -> None:
    # given: the outage identity, and a cap of two faces per photo
    backend = FakeFaceBackend()
    settings.DROPIN_MAX_FACES_PER_PHOTO = 2
    # when / then: the outage identity raises the transient error on both operations
    with pytest.raises(FaceBackendUnavailable):
        search(backend, collection="c", image=fake_face_image(["alice", "!unavailable"]), enrolled=[])
    with pytest.raises(FaceBackendUnavailable):
        backend.enroll(collection="c", subject="face-1", image=fake_face_image(["!unavailable"]))
    # and: a photo of three is searched for two faces only
    result = search(
        backend, collection="c", image=fake_face_image(["a", "b", "c"]), enrolled=[Enrolled("face-3", "c", ())]
    )
    assert ([f.face_key for f in result.faces], result.matches, result.searches) == (["fake-0-a", "fake-1-b"], [], 2)
    # and: forgetting is a harmless no-op
    backend.forget(collection="c", refs=["a", "unknown"])


def test_fake_honours_a_threshold_above_exact_matches(settings: Any) -> None:
    # given: a threshold no similarity can reach
    settings.DROPIN_MATCH_THRESHOLD = 1.01
    # when: an enrolled identity is searched
    result = search(
        FakeFaceBackend(), collection="c", image=fake_face_image(["alice"]), enrolled=[Enrolled("face-1", "alice", ())]
    )
    # then: the face is found but not matched
    assert (len(result.faces), result.matches) == (1, [])


# --- local (real dlib) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalFaceBackend:
    """The process-wide local backend; its dlib models load once for the whole module."""
    backend = get_backend("local")
    assert isinstance(backend, LocalFaceBackend)
    return backend


@pytest.fixture(scope="module")
def astronaut_selfie() -> bytes:
    return encode(head("astronaut.png", ASTRONAUT_HEAD))


@pytest.fixture(scope="module")
def astronaut(local: LocalFaceBackend, astronaut_selfie: bytes) -> Enrolled:
    enrolled = local.enroll(collection="ev-1", subject="face-17", image=astronaut_selfie)
    return Enrolled(subject="face-17", ref=enrolled.ref, embedding=enrolled.embedding)


@pytest.fixture(scope="module")
def hopper(local: LocalFaceBackend) -> Enrolled:
    enrolled = local.enroll(collection="ev-1", subject="face-42", image=(FIXTURES / "grace_hopper.jpg").read_bytes())
    return Enrolled(subject="face-42", ref=enrolled.ref, embedding=enrolled.embedding)


def test_local_enrols_one_face_as_a_128_float_descriptor(astronaut: Enrolled) -> None:
    # given / when: the astronaut's selfie enrolled (fixture)
    # then: a 128-d descriptor of real numbers, no backend ref
    assert astronaut.ref == ""
    assert len(astronaut.embedding) == DESCRIPTOR_SIZE
    assert all(isinstance(value, float) for value in astronaut.embedding)
    assert any(value != 0.0 for value in astronaut.embedding)


def test_local_finds_the_same_face_resized_in_a_larger_photo(
    local: LocalFaceBackend, astronaut: Enrolled, hopper: Enrolled, astronaut_selfie: bytes
) -> None:
    # given: where the face sits in the selfie, and that selfie enlarged 1.5x into a 1200x800 photo
    (in_selfie,) = search(local, collection="ev-1", image=astronaut_selfie, enrolled=[]).faces
    photo = encode(canvas((1200, 800), (head("astronaut.png", ASTRONAUT_HEAD, 1.5), (600, 300))))
    # when: the photo is searched against the astronaut and Grace Hopper
    result = search(local, collection="ev-1", image=photo, enrolled=[astronaut, hopper])
    # then: one face where it was pasted, matched to the astronaut only
    (face,) = result.faces
    x, y = centre(in_selfie.box)
    assert near(centre(face.box), (600 + 1.5 * x, 300 + 1.5 * y), tolerance=20)
    assert face.face_key == f"x{face.box.left}y{face.box.top}w{face.box.width}h{face.box.height}"
    (match,) = result.matches
    assert (match.face_key, match.subject) == (face.face_key, "face-17")
    assert 0.4 <= match.similarity <= 1.0
    assert result.searches == 1


def test_local_downscales_large_photos_but_reports_boxes_in_original_pixels(
    local: LocalFaceBackend, astronaut: Enrolled, settings: Any
) -> None:
    # given: the 1200x800 photo searched at full size, and again with a working size of 600 px
    photo = encode(canvas((1200, 800), (head("astronaut.png", ASTRONAUT_HEAD, 1.5), (600, 300))))
    full = search(local, collection="ev-1", image=photo, enrolled=[astronaut])
    settings.DROPIN_LOCAL_MAX_IMAGE_SIDE = 600
    # when: the same photo is searched downscaled by half
    half = search(local, collection="ev-1", image=photo, enrolled=[astronaut])
    # then: the face is at the same place in original pixels, and still matched
    (a,), (b,) = full.faces, half.faces
    assert near(centre(a.box), centre(b.box), tolerance=8) and abs(a.box.width - b.box.width) <= 12
    assert [m.subject for m in half.matches] == ["face-17"]


def test_local_tells_two_real_people_apart(local: LocalFaceBackend, astronaut: Enrolled, hopper: Enrolled) -> None:
    # given: one photo showing the astronaut (left) and Grace Hopper (right), at similar sizes
    photo = encode(
        canvas(
            (900, 450),
            (head("astronaut.png", ASTRONAUT_HEAD), (40, 90)),
            (head("grace_hopper.jpg", HOPPER_HEAD, 0.55), (520, 100)),
        )
    )
    # when: searched against both enrolments
    result = search(local, collection="ev-1", image=photo, enrolled=[astronaut, hopper])
    # then: two faces, each matched to its own subject and not to the other
    left, right = sorted(result.faces, key=lambda f: f.box.left)
    assert matched(result) == {(left.face_key, "face-17"), (right.face_key, "face-42")}
    assert result.searches == 2


def test_local_rejects_a_selfie_without_a_face_and_finds_none_in_such_a_photo(
    local: LocalFaceBackend, astronaut: Enrolled
) -> None:
    # given: a real photo with no face in it (the space-suit corner of the astronaut portrait)
    no_face = encode(Image.open(FIXTURES / "astronaut.png").convert("RGB").crop((330, 0, 512, 300)))
    # when / then: enrolment refuses it and a search finds nothing and bills nothing
    with pytest.raises(NoFaceFound):
        local.enroll(collection="ev-1", subject="face-1", image=no_face)
    assert search(local, collection="ev-1", image=no_face, enrolled=[astronaut]) == SearchResult(
        faces=[], matches=[], searches=0
    )


def test_local_two_faces_side_by_side_are_several_on_enrol_and_two_matches_on_search(
    local: LocalFaceBackend, astronaut: Enrolled
) -> None:
    # given: the same head pasted twice side by side
    face = head("astronaut.png", ASTRONAUT_HEAD)
    photo = encode(canvas((600, 300), (face, (20, 15)), (face, (330, 15))))
    # when / then: it is not a usable selfie
    with pytest.raises(SeveralFaces):
        local.enroll(collection="ev-1", subject="face-1", image=photo)
    # and: a search finds two faces with distinct keys, both matched, stable for the same bytes
    result = search(local, collection="ev-1", image=photo, enrolled=[astronaut])
    keys = [f.face_key for f in result.faces]
    assert len(set(keys)) == 2
    assert matched(result) == {(keys[0], "face-17"), (keys[1], "face-17")}
    assert result.searches == 2
    assert [f.face_key for f in search(local, collection="ev-1", image=photo, enrolled=[astronaut]).faces] == keys


def test_local_enrols_a_selfie_with_a_small_bystander_behind(local: LocalFaceBackend) -> None:
    # given: the astronaut large in front and a much smaller face in the background
    photo = encode(
        canvas(
            (900, 700),
            (head("astronaut.png", ASTRONAUT_HEAD, 2.0), (20, 80)),
            (head("astronaut.png", ASTRONAUT_HEAD, 0.7), (650, 40)),
        )
    )
    assert len(search(local, collection="ev-1", image=photo, enrolled=[]).faces) == 2  # both are detected
    # when: it is enrolled
    enrolled = local.enroll(collection="ev-1", subject="face-5", image=photo)
    # then: the large face is the one enrolled: the same photo matches it exactly there, less on the small face
    result = search(
        local, collection="ev-1", image=photo, enrolled=[Enrolled("face-5", enrolled.ref, enrolled.embedding)]
    )
    by_key = {m.face_key: m.similarity for m in result.matches}
    large, small = sorted(result.faces, key=lambda f: -f.box.width)
    assert by_key[large.face_key] == pytest.approx(1.0)
    assert by_key.get(small.face_key, 0.0) < 0.99


def test_local_reports_boxes_of_the_displayed_image_for_exif_rotated_photos(
    local: LocalFaceBackend, astronaut: Enrolled
) -> None:
    # given: a 900x500 photo, and the same photo stored rotated with EXIF "rotate 90 CW to display"
    displayed = canvas((900, 500), (head("astronaut.png", ASTRONAUT_HEAD), (500, 120)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored_rotated = encode(displayed.transpose(Image.Transpose.ROTATE_90), exif=exif)
    # when: both are searched
    upright = search(local, collection="ev-1", image=encode(displayed), enrolled=[astronaut])
    rotated = search(local, collection="ev-1", image=stored_rotated, enrolled=[astronaut])
    # then: the same face at the same place of the displayed image, matched in both
    (a,), (b,) = upright.faces, rotated.faces
    assert near(centre(a.box), centre(b.box), tolerance=6) and abs(a.box.width - b.box.width) <= 6
    assert 500 <= a.box.left <= 800
    assert len(upright.matches) == len(rotated.matches) == 1


def test_local_threshold_cap_and_foreign_enrolments(
    local: LocalFaceBackend, astronaut: Enrolled, settings: Any
) -> None:
    # given: a photo with a large and a small astronaut face
    photo = encode(
        canvas(
            (800, 500),
            (head("astronaut.png", ASTRONAUT_HEAD, 1.3), (20, 20)),
            (head("astronaut.png", ASTRONAUT_HEAD, 0.8), (500, 100)),
        )
    )
    foreign = Enrolled(subject="face-9", ref="4e5c2c7e-rekognition-face-id", embedding=())
    # when: the cap is one face per photo
    settings.DROPIN_MAX_FACES_PER_PHOTO = 1
    capped = search(local, collection="ev-1", image=photo, enrolled=[astronaut, foreign])
    # then: only the largest face is searched, and the enrolment without a descriptor is ignored
    (face,) = capped.faces
    assert face.box.left < 300 and capped.searches == 1
    assert {m.subject for m in capped.matches} == {"face-17"}
    # when: the threshold is raised above any real similarity
    settings.DROPIN_MATCH_THRESHOLD = 0.99
    strict = search(local, collection="ev-1", image=photo, enrolled=[astronaut])
    # then: faces are still found but nothing matches
    assert (len(strict.faces), strict.matches) == (1, [])


def test_local_rejects_bytes_that_are_not_an_image(local: LocalFaceBackend, astronaut_selfie: bytes) -> None:
    # given: garbage and a truncated JPEG
    truncated = astronaut_selfie[: len(astronaut_selfie) // 2]
    # when / then: both operations raise UnreadableImage
    for image in (GARBAGE, truncated, b""):
        with pytest.raises(UnreadableImage):
            local.enroll(collection="ev-1", subject="face-1", image=image)
        with pytest.raises(UnreadableImage):
            search(local, collection="ev-1", image=image, enrolled=[])


# --- rekognition (real boto3 client, Stubber) -------------------------------------------------------

FACE_ID = "0f6c4c3e-5c4a-4c8e-9d53-8a1b7f0e2a11"
OTHER_FACE_ID = "9b2e3f40-1d7c-4e8a-b6a9-2c4d5e6f7a80"
ORPHAN_FACE_ID = "5d8e9f10-2a3b-4c5d-8e6f-7a8b9c0d1e2f"
IMAGE_ID = "3a1f6a63-8f4e-4b76-a0c5-6d2c7e8b9f01"


def a_client(**config: Any) -> Any:
    return boto3.session.Session().client(
        "rekognition",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture
def stubbed() -> Iterator[tuple[RekognitionFaceBackend, Stubber, list[tuple[str, dict[str, Any]]]]]:
    """A Rekognition backend on a real client whose calls are stubbed; `sent` records each request."""
    client = a_client()
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params))

    client.meta.events.register("before-parameter-build.rekognition.*", record)
    with Stubber(client) as stubber:
        yield RekognitionFaceBackend(client=client), stubber, sent
        stubber.assert_no_pending_responses()


def face_record(face_id: str, width: float, subject: str = "face-17") -> dict[str, Any]:
    box = {"Width": width, "Height": width * 1.2, "Left": 0.3, "Top": 0.2}
    return {
        "Face": {
            "FaceId": face_id,
            "BoundingBox": box,
            "ImageId": IMAGE_ID,
            "ExternalImageId": subject,
            "Confidence": 99.9,
        },
        "FaceDetail": {"BoundingBox": box, "Confidence": 99.9},
    }


def unindexed(width: float, *reasons: str) -> dict[str, Any]:
    box = {"Width": width, "Height": width * 1.2, "Left": 0.05, "Top": 0.05}
    return {"Reasons": list(reasons), "FaceDetail": {"BoundingBox": box, "Confidence": 98.0}}


def index_params(image: bytes, subject: str = "face-17") -> dict[str, Any]:
    return {
        "CollectionId": "ev-1",
        "Image": {"Bytes": image},
        "ExternalImageId": subject,
        "MaxFaces": 1,
        "QualityFilter": "AUTO",
        "DetectionAttributes": [],
    }


LIST_PARAMS = {"CollectionId": "ev-1", "MaxResults": 4096}


def listed(face_id: str, subject: str) -> dict[str, Any]:
    """A face as ListFaces lists it."""
    box = {"Width": 0.4, "Height": 0.48, "Left": 0.3, "Top": 0.2}
    return {"FaceId": face_id, "BoundingBox": box, "ImageId": IMAGE_ID, "ExternalImageId": subject, "Confidence": 99.9}


def list_response(*faces: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"Faces": list(faces), "FaceModelVersion": "7.0"}
    if token is not None:
        response["NextToken"] = token
    return response


def index_response(records: list[dict[str, Any]], unindexed_faces: list[dict[str, Any]]) -> dict[str, Any]:
    return {"FaceRecords": records, "UnindexedFaces": unindexed_faces, "FaceModelVersion": "7.0"}


SELFIE = encode(Image.new("RGB", (320, 400), (180, 150, 130)))


def test_rekognition_enrol_indexes_the_selfie_with_the_subject_as_external_id(stubbed: Any) -> None:
    # given: IndexFaces indexes one face and leaves out a small blurred bystander and a distant one
    backend, stubber, sent = stubbed
    stubber.add_response("list_faces", list_response(listed(ORPHAN_FACE_ID, "face-9")), LIST_PARAMS)
    stubber.add_response(
        "index_faces",
        index_response(
            [face_record(FACE_ID, 0.4)],
            [unindexed(0.35, "EXCEEDS_MAX_FACES", "LOW_SHARPNESS"), unindexed(0.1, "EXCEEDS_MAX_FACES")],
        ),
        expected_params=index_params(SELFIE),
    )
    # when: the selfie is enrolled (a JPEG under 5 MB is sent byte for byte)
    enrolled = backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)
    # then: the ref is the FaceId; the subject had no earlier face, another subject's is kept
    assert (enrolled.ref, enrolled.embedding) == (FACE_ID, ())
    assert [name for name, _ in sent] == ["ListFaces", "IndexFaces"]


def test_rekognition_enrol_creates_a_missing_collection_without_scanning_it(stubbed: Any) -> None:
    # given: the collection does not exist yet
    backend, stubber, sent = stubbed
    stubber.add_client_error(
        "list_faces", "ResourceNotFoundException", "The collection id: ev-1 does not exist", 400, LIST_PARAMS
    )
    stubber.add_response(
        "create_collection",
        {"StatusCode": 200, "CollectionArn": "aws:rekognition:eu-west-1:123456789012:collection/ev-1"},
        {"CollectionId": "ev-1"},
    )
    stubber.add_response("index_faces", index_response([face_record(FACE_ID, 0.4)], []), index_params(SELFIE))
    # when: the selfie is enrolled
    enrolled = backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)
    # then: the collection was created and the face indexed, with one IndexFaces call
    assert enrolled.ref == FACE_ID
    assert [name for name, _ in sent] == ["ListFaces", "CreateCollection", "IndexFaces"]


def test_rekognition_enrol_recreates_a_collection_deleted_since_the_scan_and_retries_once(stubbed: Any) -> None:
    # given: the collection exists for ListFaces but is gone when IndexFaces runs
    backend, stubber, _ = stubbed
    stubber.add_response("list_faces", list_response(), LIST_PARAMS)
    stubber.add_client_error(
        "index_faces", "ResourceNotFoundException", "The collection id: ev-1 does not exist", 400, index_params(SELFIE)
    )
    stubber.add_response("create_collection", {"StatusCode": 200}, {"CollectionId": "ev-1"})
    stubber.add_response("index_faces", index_response([face_record(FACE_ID, 0.4)], []), index_params(SELFIE))
    # when / then: the collection is created again and the face indexed on the second try
    assert backend.enroll(collection="ev-1", subject="face-17", image=SELFIE).ref == FACE_ID


def test_rekognition_repeated_enrol_deletes_the_earlier_face_of_the_subject_before_indexing(stubbed: Any) -> None:
    # given: an earlier attempt indexed FACE_ID for face-17 but its answer was lost; face-9 has a face too
    backend, stubber, sent = stubbed
    stubber.add_response(
        "list_faces", list_response(listed(ORPHAN_FACE_ID, "face-9"), listed(FACE_ID, "face-17")), LIST_PARAMS
    )
    stubber.add_response("delete_faces", {"DeletedFaces": [FACE_ID]}, {"CollectionId": "ev-1", "FaceIds": [FACE_ID]})
    stubber.add_response("index_faces", index_response([face_record(OTHER_FACE_ID, 0.4)], []), index_params(SELFIE))
    # when: the enrolment is retried
    enrolled = backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)
    # then: the earlier face was deleted first (face-9's kept) and only the new one remains
    assert enrolled.ref == OTHER_FACE_ID
    assert [name for name, _ in sent] == ["ListFaces", "DeleteFaces", "IndexFaces"]


def expect_selfie_of_two_comparable_faces(stubber: Stubber) -> None:
    """Enrolling SELFIE into ev-1 (no faces yet): IndexFaces indexes FACE_ID and leaves out a second
    face that passed the quality filter and is nearly as large (EXCEEDS_MAX_FACES)."""
    stubber.add_response("list_faces", list_response(), LIST_PARAMS)
    stubber.add_response(
        "index_faces",
        index_response([face_record(FACE_ID, 0.4)], [unindexed(0.3, "EXCEEDS_MAX_FACES")]),
        index_params(SELFIE),
    )


def test_rekognition_enrol_rejects_two_comparable_faces_and_deletes_the_indexed_one(stubbed: Any) -> None:
    # given: a second face that passed the quality filter and is nearly as large
    backend, stubber, _ = stubbed
    expect_selfie_of_two_comparable_faces(stubber)
    stubber.add_response("delete_faces", {"DeletedFaces": [FACE_ID]}, {"CollectionId": "ev-1", "FaceIds": [FACE_ID]})
    # when / then: SeveralFaces, after the indexed face was removed again
    with pytest.raises(SeveralFaces):
        backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)


def test_rekognition_enrol_that_cannot_delete_the_rejected_face_yet_is_retried_not_rejected(stubbed: Any) -> None:
    # given: a selfie of two comparable faces, and DeleteFaces throttled when the indexed one is removed
    backend, stubber, _ = stubbed
    expect_selfie_of_two_comparable_faces(stubber)
    stubber.add_client_error(
        "delete_faces", "ThrottlingException", "Rate exceeded", 400, {"CollectionId": "ev-1", "FaceIds": [FACE_ID]}
    )
    # when / then: a passing failure, so the enrolment runs again (and deletes the subject's face
    # first), instead of a rejection that would leave the selfie's face indexed with nothing to
    # forget it
    with pytest.raises(FaceBackendUnavailable):
        backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)


def test_rekognition_enrol_without_a_usable_face_says_why(stubbed: Any) -> None:
    # given: the only face was filtered out for quality
    backend, stubber, _ = stubbed
    stubber.add_response("list_faces", list_response(), LIST_PARAMS)
    stubber.add_response("index_faces", index_response([], [unindexed(0.2, "LOW_BRIGHTNESS")]), index_params(SELFIE))
    # when / then: NoFaceFound naming the reason
    with pytest.raises(NoFaceFound, match="LOW_BRIGHTNESS"):
        backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)


def test_rekognition_refuses_unreadable_bytes_and_invalid_subjects_without_calling_aws(stubbed: Any) -> None:
    # given: no stubbed responses at all (any call would fail the test)
    backend, _, sent = stubbed
    # when / then: the image and the subject are checked locally
    with pytest.raises(UnreadableImage):
        backend.enroll(collection="ev-1", subject="face-17", image=GARBAGE)
    with pytest.raises(UnreadableImage):
        search(backend, collection="ev-1", image=GARBAGE, enrolled=[])
    with pytest.raises(ValueError):
        backend.enroll(collection="ev-1", subject="face 17/x", image=SELFIE)
    assert sent == []


def test_rekognition_re_encodes_rotated_and_oversized_images(stubbed: Any) -> None:
    # given: a PNG of noise over 5 MB, and a JPEG stored sideways with an EXIF orientation
    backend, stubber, sent = stubbed
    noise = Image.frombytes("RGB", (1500, 1300), random.Random(7).randbytes(1500 * 1300 * 3))
    big = encode(noise, "PNG")
    assert len(big) > MAX_IMAGE_BYTES
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = encode(Image.new("RGB", (400, 300), (90, 90, 90)), exif=exif)
    for _ in range(2):
        stubber.add_response("detect_faces", {"FaceDetails": []}, {"Image": {"Bytes": ANY}, "Attributes": ["DEFAULT"]})
    # when: both are searched
    search(backend, collection="ev-1", image=big, enrolled=[])
    search(backend, collection="ev-1", image=sideways, enrolled=[])
    # then: Rekognition got JPEGs within its limit, the second one upright (300x400) without EXIF
    (_, first), (_, second) = sent
    for params in (first, second):
        assert len(params["Image"]["Bytes"]) <= MAX_IMAGE_BYTES
        assert Image.open(io.BytesIO(params["Image"]["Bytes"])).format == "JPEG"
    upright = Image.open(io.BytesIO(second["Image"]["Bytes"]))
    assert upright.size == (300, 400) and upright.getexif().get(0x0112) is None


def test_rekognition_search_crops_each_face_and_maps_face_ids_to_enrolled_subjects(stubbed: Any) -> None:
    # given: a 1000x600 photo with two faces, and two enrolments of face-17 plus one of face-42
    backend, stubber, sent = stubbed
    photo = encode(Image.new("RGB", (1000, 600), (120, 120, 120)))
    enrolled = [
        Enrolled("face-17", FACE_ID, ()),
        Enrolled("face-17", OTHER_FACE_ID, ()),
        Enrolled("face-42", "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", ()),
    ]
    stubber.add_response(
        "detect_faces",
        {
            "FaceDetails": [
                {"BoundingBox": {"Width": 0.1, "Height": 0.2, "Left": 0.6, "Top": 0.3}, "Confidence": 99.0},
                {"BoundingBox": {"Width": 0.12, "Height": 0.2, "Left": 0.1, "Top": 0.25}, "Confidence": 99.5},
            ]
        },
        {"Image": {"Bytes": photo}, "Attributes": ["DEFAULT"]},
    )

    def match(face_id: str, similarity: float, subject: str) -> dict[str, Any]:
        return {"Similarity": similarity, "Face": {"FaceId": face_id, "ExternalImageId": subject, "Confidence": 99.0}}

    search_params = {"CollectionId": "ev-1", "Image": {"Bytes": ANY}, "FaceMatchThreshold": 90.0, "MaxFaces": 100}
    # first in reading order: the face at (100,150); matches face-17 twice and a forgotten face
    stubber.add_response(
        "search_faces_by_image",
        {
            "FaceMatches": [
                match(FACE_ID, 99.2, "face-17"),
                match(OTHER_FACE_ID, 97.0, "face-17"),
                match(ORPHAN_FACE_ID, 98.0, "face-9"),
            ],
            "SearchedFaceConfidence": 99.0,
            "FaceModelVersion": "7.0",
        },
        search_params,
    )
    # second: Rekognition does not re-detect a face in the crop
    stubber.add_client_error(
        "search_faces_by_image",
        "InvalidParameterException",
        "There are no faces in the image. Should be at least 1.",
        400,
        search_params,
    )
    # when: the photo is searched
    result = search(backend, collection="ev-1", image=photo, enrolled=enrolled)
    # then: two faces in reading order, keyed by their pixel boxes
    assert [f.face_key for f in result.faces] == ["x100y150w120h120", "x600y180w100h120"]
    # and: one match for face-17 at its best similarity; the forgotten face and the empty crop give nothing
    (best,) = result.matches
    assert (best.face_key, best.subject, best.similarity) == ("x100y150w120h120", "face-17", pytest.approx(0.992))
    assert result.searches == 2
    # and: each crop is a JPEG of the box padded by a quarter on each side
    crops = [Image.open(io.BytesIO(params["Image"]["Bytes"])) for name, params in sent if name == "SearchFacesByImage"]
    assert [(c.format, c.size) for c in crops] == [("JPEG", (180, 180)), ("JPEG", (150, 180))]


def test_rekognition_boxes_of_a_large_photo_are_in_original_pixels(stubbed: Any) -> None:
    # given: a 6000x4000 JPEG (decoded at 4096 px) with one face a tenth of its width
    backend, stubber, sent = stubbed
    photo = encode(Image.new("RGB", (6000, 4000), (120, 120, 120)))
    stubber.add_response(
        "detect_faces",
        {"FaceDetails": [{"BoundingBox": {"Width": 0.1, "Height": 0.15, "Left": 0.5, "Top": 0.25}}]},
        {"Image": {"Bytes": photo}, "Attributes": ["DEFAULT"]},
    )
    stubber.add_response("search_faces_by_image", {"FaceMatches": []})
    # when: it is searched
    result = search(backend, collection="ev-1", image=photo, enrolled=[Enrolled("face-17", FACE_ID, ())])
    # then: the box is in the original's pixels; the crop comes from the working image, padded
    assert [f.face_key for f in result.faces] == ["x3000y1000w600h600"]
    (crop,) = [Image.open(io.BytesIO(p["Image"]["Bytes"])) for name, p in sent if name == "SearchFacesByImage"]
    assert crop.format == "JPEG" and abs(crop.width - 900 * 4096 / 6000) <= 2


def test_rekognition_search_without_enrolled_faces_or_collection_spends_no_searches(stubbed: Any) -> None:
    # given: a photo with one face
    backend, stubber, _ = stubbed
    photo = encode(Image.new("RGB", (400, 300), (120, 120, 120)))
    details = {"FaceDetails": [{"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": 0.3}}]}
    detect = {"Image": {"Bytes": photo}, "Attributes": ["DEFAULT"]}
    stubber.add_response("detect_faces", details, detect)
    stubber.add_response("detect_faces", details, detect)
    stubber.add_client_error("search_faces_by_image", "ResourceNotFoundException", "no collection", 400)
    # when: searched with nobody enrolled, then with an enrolment whose collection is gone
    nobody = search(backend, collection="ev-1", image=photo, enrolled=[])
    gone = search(backend, collection="ev-1", image=photo, enrolled=[Enrolled("face-17", FACE_ID, ())])
    # then: the face is reported both times; no search the first time, one (unmatched) the second
    assert (len(nobody.faces), nobody.matches, nobody.searches) == (1, [], 0)
    assert (len(gone.faces), gone.matches, gone.searches) == (1, [], 1)


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("search_faces_by_image", "ThrottlingException", 400),
        ("search_faces_by_image", "ProvisionedThroughputExceededException", 400),
        ("detect_faces", "InternalServerError", 500),
    ],
)
def test_rekognition_throttling_and_server_errors_are_transient(
    stubbed: Any, operation: str, code: str, status: int
) -> None:
    # given: Rekognition throttles or fails on one call
    backend, stubber, _ = stubbed
    photo = encode(Image.new("RGB", (400, 300), (120, 120, 120)))
    if operation == "detect_faces":
        stubber.add_client_error("detect_faces", code, "boom", status)
    else:
        details = {"FaceDetails": [{"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": 0.3}}]}
        stubber.add_response("detect_faces", details)
        stubber.add_client_error("search_faces_by_image", code, "slow down", status)
    # when / then: the caller sees FaceBackendUnavailable and will retry
    with pytest.raises(FaceBackendUnavailable):
        search(backend, collection="ev-1", image=photo, enrolled=[Enrolled("face-17", FACE_ID, ())])


def test_rekognition_unreachable_endpoint_is_transient() -> None:
    # given: a real client pointed at a closed local port, no retries
    client = boto3.session.Session().client(
        "rekognition",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    backend = RekognitionFaceBackend(client=client)
    # when / then: EndpointConnectionError becomes FaceBackendUnavailable
    with pytest.raises(FaceBackendUnavailable):
        backend.forget(collection="ev-1", refs=[FACE_ID])


def test_rekognition_forget_deletes_faces_and_tolerates_a_missing_collection(stubbed: Any) -> None:
    # given: DeleteFaces succeeds once, then the collection is gone
    backend, stubber, sent = stubbed
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [FACE_ID], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": "ev-1", "FaceIds": [FACE_ID, OTHER_FACE_ID]},
    )
    stubber.add_client_error("delete_faces", "ResourceNotFoundException", "no collection", 400)
    # when: refs are forgotten (duplicates and local-backend "" refs included), twice, then nothing
    backend.forget(collection="ev-1", refs=[OTHER_FACE_ID, FACE_ID, FACE_ID, ""])
    backend.forget(collection="ev-1", refs=[FACE_ID])
    backend.forget(collection="ev-1", refs=[""])
    # then: two DeleteFaces calls, none for the empty list
    assert [name for name, _ in sent] == ["DeleteFaces", "DeleteFaces"]


def test_rekognition_forget_by_subject_pages_through_the_collection(stubbed: Any) -> None:
    # given: a collection listed in two pages, face-17 with one face on each; face-9 and face-42 too
    backend, stubber, sent = stubbed
    stubber.add_response(
        "list_faces",
        list_response(listed(FACE_ID, "face-17"), listed(ORPHAN_FACE_ID, "face-9"), token="page-2"),
        LIST_PARAMS,
    )
    stubber.add_response(
        "list_faces",
        list_response(listed("7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "face-42"), listed(OTHER_FACE_ID, "face-17")),
        {**LIST_PARAMS, "NextToken": "page-2"},
    )
    stored = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    stubber.add_response(
        "delete_faces",
        {"DeletedFaces": [FACE_ID, OTHER_FACE_ID, stored]},
        {"CollectionId": "ev-1", "FaceIds": sorted([FACE_ID, OTHER_FACE_ID, stored])},
    )
    # when: face-17 is forgotten by subject and by its stored ref
    backend.forget(collection="ev-1", refs=[stored], subjects=["face-17"])
    # then: both pages were read and one DeleteFaces removed face-17's faces and the ref only
    assert [name for name, _ in sent] == ["ListFaces", "ListFaces", "DeleteFaces"]


def test_rekognition_forget_deletes_at_most_4096_faces_per_call(stubbed: Any) -> None:
    # given: 4097 faces of one subject in one ListFaces page
    backend, stubber, sent = stubbed
    ids = sorted(f"00000000-0000-4000-8000-{n:012d}" for n in range(4097))
    stubber.add_response("list_faces", list_response(*(listed(face_id, "face-17") for face_id in ids)), LIST_PARAMS)
    stubber.add_response("delete_faces", {"DeletedFaces": ids[:4096]}, {"CollectionId": "ev-1", "FaceIds": ids[:4096]})
    stubber.add_response("delete_faces", {"DeletedFaces": ids[4096:]}, {"CollectionId": "ev-1", "FaceIds": ids[4096:]})
    # when / then: the subject is forgotten in two DeleteFaces calls
    backend.forget(collection="ev-1", refs=[], subjects=["face-17"])
    assert [name for name, _ in sent] == ["ListFaces", "DeleteFaces", "DeleteFaces"]


def test_rekognition_forget_by_subject_without_a_collection_is_a_no_op(stubbed: Any) -> None:
    # given: the event's collection was never created
    backend, stubber, sent = stubbed
    stubber.add_client_error("list_faces", "ResourceNotFoundException", "no collection", 400, LIST_PARAMS)
    # when: a subject and a ref are forgotten
    backend.forget(collection="ev-1", refs=[FACE_ID], subjects=["face-17"])
    # then: nothing else is called, nothing raised
    assert [name for name, _ in sent] == ["ListFaces"]


@pytest.mark.parametrize("operation", ["forget", "enroll"])
def test_rekognition_throttled_list_faces_is_transient(stubbed: Any, operation: str) -> None:
    # given: ListFaces is throttled
    backend, stubber, sent = stubbed
    stubber.add_client_error("list_faces", "ThrottlingException", "slow down", 400, LIST_PARAMS)
    # when / then: FaceBackendUnavailable, and nothing is deleted or indexed
    with pytest.raises(FaceBackendUnavailable):
        if operation == "forget":
            backend.forget(collection="ev-1", refs=[FACE_ID], subjects=["face-17"])
        else:
            backend.enroll(collection="ev-1", subject="face-17", image=SELFIE)
    assert [name for name, _ in sent] == ["ListFaces"]


def test_fake_and_local_forget_accept_subjects(local: LocalFaceBackend) -> None:
    # given / when / then: backends that store nothing accept subjects and do nothing
    FakeFaceBackend().forget(collection="c", refs=["alice"], subjects=["face-1"])
    local.forget(collection="c", refs=[""], subjects=["face-1"])


def test_rekognition_client_uses_the_configured_region(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a region setting and credentials from the environment
    settings.AWS_REGION = "eu-central-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # when: the backend builds its client lazily
    backend = RekognitionFaceBackend()
    # then: the client is for Rekognition in that region
    assert backend.client.meta.region_name == "eu-central-1"
    assert backend.client.meta.service_model.service_name == "rekognition"
