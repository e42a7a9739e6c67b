"""A photo is analysed once: `analyse_photo()` detects its faces, and the drop-in match
(`match_photo()`) and the find-me index (`index_photo()`) both use that analysis.

Calls are counted where the backends meet the real libraries: the local backend's dlib detector
and descriptor model (wrapped on a backend object of their own), the fake backend's EXIF read,
and Rekognition's operations as botocore sends them (real client, Stubber). The results are
compared with the old two-call path (one analysis for the search, another for the index). Real
Postgres and Redis for the jobs.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from django.test import override_settings
from django_redis import get_redis_connection
from PIL import Image

from apps.catalog import storage
from apps.core.locks import FencedLease, LockLost, StaleLeaseError, redis_key, try_fenced_lock
from apps.dropin.faces import (
    Enrolled,
    FaceBackend,
    FaceBackendUnavailable,
    IndexedFace,
    IndexTarget,
    PhotoAnalysis,
    base,
)
from apps.dropin.faces import fake as fake_module
from apps.dropin.faces.fake import FakeFaceBackend, fake_face_image
from apps.dropin.faces.local import LocalFaceBackend
from apps.dropin.faces.rekognition import RekognitionFaceBackend
from apps.dropin.models import AttendeeFace, FaceMatch, PhotoFace
from apps.dropin.selectors import enrolled_faces
from apps.dropin.services import (
    TOPIC_FACE_FORGET,
    collection_name,
    dropin_job_process,
    face_enrol,
    lease_name,
    photo_collection_name,
    photo_faces_index,
    selfie_register,
)
from apps.tenancy.context import system_context, tenant_context
from tests.dropin.helpers import an_event, enrolled_face, job, outbox_payloads, photo_of, run_forgets
from tests.dropin.test_face_backends import (
    ASTRONAUT_HEAD,
    FACE_ID,
    HOPPER_HEAD,
    IMAGE_ID,
    a_client,
    canvas,
    encode,
    head,
    search,
)

FIXTURES = Path(__file__).parent / "fixtures"
PHOTO_FACE_ID = "2b7e9c1a-3d4f-4a5b-9c6d-7e8f9a0b1c2d"
RETRIED_FACE_ID = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
TARGET = IndexTarget(collection="ev-1-photos", subject="photo-12")


def index(backend: FaceBackend, image: bytes, target: IndexTarget = TARGET) -> list[IndexedFace]:
    """The old path's second call: the photo analysed again, for its index alone."""
    return backend.index_photo(analysis=backend.analyse_photo(image=image, index=target))


def both_faces() -> bytes:
    """The astronaut (left) and Grace Hopper (right) in one 900x450 photo."""
    return encode(
        canvas(
            (900, 450),
            (head("astronaut.png", ASTRONAUT_HEAD), (40, 90)),
            (head("grace_hopper.jpg", HOPPER_HEAD, 0.55), (520, 100)),
        )
    )


# --- local: calls into dlib, counted -------------------------------------------------------------


class CountedDetector:
    """dlib's frontal face detector, counting the images it is run on."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.inner(*args)


class CountedEncoder:
    """dlib's ResNet face descriptor model, counting the faces it describes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def compute_face_descriptor(self, *args: Any) -> Any:
        self.calls += 1
        return self.inner.compute_face_descriptor(*args)


@dataclasses.dataclass
class Counted:
    backend: LocalFaceBackend
    detector: CountedDetector
    encoder: CountedEncoder


def counted_local() -> Counted:
    """A local backend of its own whose dlib detector and descriptor model count their calls
    (the models are the process-wide backend's, loaded once)."""
    models = base.get_backend("local")._loaded()  # type: ignore[attr-defined]
    detector, encoder = CountedDetector(models.detector), CountedEncoder(models.encoder)
    backend = LocalFaceBackend()
    backend._models = dataclasses.replace(models, detector=detector, encoder=encoder)
    return Counted(backend=backend, detector=detector, encoder=encoder)


@pytest.fixture(scope="module")
def enrolled_people() -> list[Enrolled]:
    local = base.get_backend("local")
    astronaut = local.enroll(collection="ev-1", subject="face-17", image=encode(head("astronaut.png", ASTRONAUT_HEAD)))
    hopper = local.enroll(collection="ev-1", subject="face-42", image=(FIXTURES / "grace_hopper.jpg").read_bytes())
    return [
        Enrolled("face-17", astronaut.ref, astronaut.embedding),
        Enrolled("face-42", hopper.ref, hopper.embedding),
    ]


def test_local_detects_a_photo_once_for_its_match_and_its_index(enrolled_people: list[Enrolled]) -> None:
    # given: a photo of two people and a local backend whose dlib calls are counted
    photo = both_faces()
    counted = counted_local()
    # when: it is analysed once, then matched and indexed from that analysis
    analysis = counted.backend.analyse_photo(image=photo, index=TARGET)
    result = counted.backend.match_photo(analysis=analysis, collection="ev-1", enrolled=enrolled_people)
    indexed = counted.backend.index_photo(analysis=analysis)
    # then: dlib detected faces once and described each of the two faces once
    assert (counted.detector.calls, counted.encoder.calls) == (1, 2)
    # and: the results are those of the old path, which analysed the photo for each call
    assert result == search(counted.backend, collection="ev-1", image=photo, enrolled=enrolled_people)
    assert indexed == index(counted.backend, photo)
    assert {m.subject for m in result.matches} == {"face-17", "face-42"}
    assert [f.face_key for f in indexed] == [f.face_key for f in result.faces]
    # and: those two analyses of the same bytes ran dlib again each: nothing is answered from memory
    assert (counted.detector.calls, counted.encoder.calls) == (3, 6)


@pytest.mark.parametrize("name", ["local", "fake", "rekognition"])
def test_no_backend_keeps_a_photo_between_calls_nor_per_thread_state(name: str) -> None:
    # given: a backend that has analysed a photo on another thread
    backend: FaceBackend = (
        counted_local().backend if name == "local" else FakeFaceBackend() if name == "fake" else _unused_rekognition()
    )
    photo = both_faces() if name == "local" else fake_face_image(["ann", "bob"], size=(96, 64))
    analyses: list[PhotoAnalysis] = []
    if name != "rekognition":
        worker = threading.Thread(target=lambda: analyses.append(backend.analyse_photo(image=photo, index=TARGET)))
        worker.start()
        worker.join()
    # then: the backend holds no thread-local state and no analysis; the analysis is self-contained
    state = vars(backend).values()
    assert not any(isinstance(value, threading.local | PhotoAnalysis) for value in state)
    for analysis in analyses:
        here = backend.analyse_photo(image=photo, index=TARGET)
        assert backend.index_photo(analysis=analysis) == backend.index_photo(analysis=here)
        assert backend.match_photo(analysis=analysis, collection="c", enrolled=[]) == backend.match_photo(
            analysis=here, collection="c", enrolled=[]
        )


def _unused_rekognition() -> RekognitionFaceBackend:
    return RekognitionFaceBackend(client=a_client())


def test_an_analysis_is_refused_for_an_index_it_was_not_made_for_and_by_another_backend() -> None:
    # given: a fake analysis made without an index target
    fake = FakeFaceBackend()
    analysis = fake.analyse_photo(image=fake_face_image(["ann"]))
    # when / then: it cannot be indexed, and no other backend takes it
    with pytest.raises(ValueError, match="without an index target"):
        fake.index_photo(analysis=analysis)
    with pytest.raises(TypeError):
        counted_local().backend.match_photo(analysis=analysis, collection="c", enrolled=[])
    with pytest.raises(TypeError):
        _unused_rekognition().index_photo(analysis=analysis)


# --- rekognition: operations as botocore sends them --------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[RekognitionFaceBackend, Stubber, list[str]]]:
    client = a_client()
    sent: list[str] = []
    client.meta.events.register("before-parameter-build.rekognition.*", lambda model, **_: sent.append(model.name))
    with Stubber(client) as stubber:
        yield RekognitionFaceBackend(client=client), stubber, sent
        stubber.assert_no_pending_responses()


def box(left: float, width: float = 0.1) -> dict[str, float]:
    return {"Width": width, "Height": width * 2, "Left": left, "Top": 0.3}


def record(face_id: str, left: float, subject: str = "photo-12") -> dict[str, Any]:
    return {
        "Face": {
            "FaceId": face_id,
            "BoundingBox": box(left),
            "ImageId": IMAGE_ID,
            "ExternalImageId": subject,
            "Confidence": 99.8,
        },
        "FaceDetail": {"BoundingBox": box(left), "Confidence": 99.8},
    }


def unindexed(left: float, reason: str) -> dict[str, Any]:
    return {"Reasons": [reason], "FaceDetail": {"BoundingBox": box(left), "Confidence": 97.0}}


def match(face_id: str, similarity: float, subject: str = "face-17") -> dict[str, Any]:
    face = {"FaceId": face_id, "ExternalImageId": subject, "Confidence": 99.0}
    return {"Similarity": similarity, "Face": face}


def index_params(image: Any, collection: str = "ev-1-photos", subject: str = "photo-12") -> dict[str, Any]:
    return {
        "CollectionId": collection,
        "Image": {"Bytes": image},
        "ExternalImageId": subject,
        "MaxFaces": 50,
        "QualityFilter": "AUTO",
        "DetectionAttributes": [],
    }


def search_params(collection: str = "ev-1") -> dict[str, Any]:
    return {"CollectionId": collection, "Image": {"Bytes": ANY}, "FaceMatchThreshold": 90.0, "MaxFaces": 100}


def test_rekognition_analyses_a_photo_with_one_index_faces_call_and_matches_every_face_it_detected(
    stubbed: Any,
) -> None:
    # given: IndexFaces indexes one face of the photo and reports a blurred one it did not index
    backend, stubber, sent = stubbed
    photo = encode(Image.new("RGB", (1000, 600), (120, 120, 120)))
    enrolled = [Enrolled("face-17", FACE_ID, ())]
    stubber.add_response(
        "index_faces",
        {
            "FaceRecords": [record(PHOTO_FACE_ID, 0.6)],
            "UnindexedFaces": [unindexed(0.1, "LOW_SHARPNESS")],
            "FaceModelVersion": "7.0",
        },
        index_params(photo),
    )
    # the blurred face (first in reading order) matches face-17; the indexed one matches nobody
    stubber.add_response("search_faces_by_image", {"FaceMatches": [match(FACE_ID, 96.0)]}, search_params())
    stubber.add_response("search_faces_by_image", {"FaceMatches": []}, search_params())
    # when: the photo is analysed for indexing, matched and indexed
    analysis = backend.analyse_photo(image=photo, index=TARGET)
    result = backend.match_photo(analysis=analysis, collection="ev-1", enrolled=enrolled)
    indexed = backend.index_photo(analysis=analysis)
    # then: no DetectFaces: IndexFaces was the one detection, then one search per face
    assert sent == ["IndexFaces", "SearchFacesByImage", "SearchFacesByImage"]
    # and: the indexed face carries its FaceId; both detected faces were matched
    assert indexed == [IndexedFace(face_key="x600y180w100h120", ref=PHOTO_FACE_ID, descriptor=b"")]
    assert analysis.stored_refs() == [PHOTO_FACE_ID]
    assert [f.face_key for f in result.faces] == ["x100y180w100h120", "x600y180w100h120"]
    assert [(m.face_key, m.subject, m.similarity) for m in result.matches] == [
        ("x100y180w100h120", "face-17", pytest.approx(0.96))
    ]
    assert result.searches == 2
    # when: the old path runs on the same faces: DetectFaces then the searches, and IndexFaces apart
    stubber.add_response(
        "detect_faces",
        {"FaceDetails": [{"BoundingBox": box(0.6)}, {"BoundingBox": box(0.1)}]},
        {"Image": {"Bytes": photo}, "Attributes": ["DEFAULT"]},
    )
    stubber.add_response("search_faces_by_image", {"FaceMatches": [match(FACE_ID, 96.0)]}, search_params())
    stubber.add_response("search_faces_by_image", {"FaceMatches": []}, search_params())
    stubber.add_response(
        "index_faces",
        {"FaceRecords": [record(PHOTO_FACE_ID, 0.6)], "UnindexedFaces": [unindexed(0.1, "LOW_SHARPNESS")]},
        index_params(photo),
    )
    old_result = search(backend, collection="ev-1", image=photo, enrolled=enrolled)
    old_indexed = index(backend, photo)
    # then: the same match and the same index, for one provider call more
    assert (old_result, old_indexed) == (result, indexed)
    assert sent[3:] == ["DetectFaces", "SearchFacesByImage", "SearchFacesByImage", "IndexFaces"]


# --- drop-in jobs: one analysis per job ------------------------------------------------------------

needs_db = pytest.mark.django_db(transaction=True)


def process(org: Any, job_id: int) -> str:
    with tenant_context(org.pk):
        return dropin_job_process(job_id=job_id).outcome


def match_rows(org: Any) -> list[tuple[int, str, float]]:
    with system_context("test: matches"):
        return list(
            FaceMatch.objects.filter(tenant=org)
            .order_by("attendee_id", "face_key")
            .values_list("attendee_id", "face_key", "similarity")
        )


def face_rows(org: Any) -> list[tuple[str, str, bytes]]:
    with system_context("test: photo faces"):
        return [
            (key, ref, bytes(descriptor))
            for key, ref, descriptor in PhotoFace.objects.filter(tenant=org)
            .order_by("face_key")
            .values_list("face_key", "ref", "descriptor")
        ]


@needs_db
def test_a_fake_job_reads_the_photo_once_for_its_matches_and_its_index(tenant_a: Any, monkeypatch: Any) -> None:
    # given: Ann registered; a photo of Ann and Bob, not indexed yet; the fake backend's EXIF reads counted
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    _, job_id = photo_of(tenant_a.org, event, ["ann", "bob"])
    reads: list[int] = []
    real_read = fake_module.read_identities

    def counted_read(image: bytes) -> Any:
        reads.append(len(image))
        return real_read(image)

    monkeypatch.setattr(fake_module, "read_identities", counted_read)
    # when: the job runs
    assert process(tenant_a.org, job_id) == "succeeded"
    # then: the photo was read once; Ann matched, both faces indexed
    assert len(reads) == 1
    assert [(a, k) for a, k, _ in match_rows(tenant_a.org)] == [(ann.attendee_id, "fake-0-ann")]
    assert [(k, r) for k, r, _ in face_rows(tenant_a.org)] == [("fake-0-ann", "ann"), ("fake-1-bob", "bob")]
    assert (job(job_id).faces, job(job_id).searches) == (2, 2)


@needs_db
def test_a_local_job_runs_dlib_once_and_stores_what_the_two_call_path_stored(tenant_a: Any, monkeypatch: Any) -> None:
    # given: the local backend, its dlib calls counted; the astronaut registered with her selfie
    counted = counted_local()
    monkeypatch.setitem(base._backends, "local", counted.backend)
    event = an_event(tenant_a.org)
    selfie = encode(head("astronaut.png", ASTRONAUT_HEAD))
    with override_settings(DROPIN_FACE_BACKEND="local"), tenant_context(tenant_a.org.pk):
        face = selfie_register(
            tenant_id=tenant_a.org.pk, event_id=event.pk, email="eileen@example.com", consent=True,
            image=io.BytesIO(selfie), image_size=len(selfie), actor_label="t",
        )  # fmt: skip
        assert face_enrol(face_id=face.pk) == "enrolled"
        enrolled = [e for _, e in enrolled_faces(tenant_id=tenant_a.org.pk, event_id=event.pk, backend="local")]
    # and: a photo of her and Grace Hopper uploaded, its job queued
    photo, job_id = photo_of(tenant_a.org, event, [])
    image = both_faces()
    storage.write_exact(name=str(photo.original.name), data=image)
    counted.detector.calls = counted.encoder.calls = 0
    # when: the job runs, then its message is delivered again
    with override_settings(DROPIN_FACE_BACKEND="local"):
        assert process(tenant_a.org, job_id) == "succeeded"
        assert process(tenant_a.org, job_id) == "skipped"
    # then: dlib detected faces in the photo once and described its two faces once
    assert (counted.detector.calls, counted.encoder.calls) == (1, 2)
    # and: the match and the index are what the old path (one analysis per call) computed
    old_result = search(counted.backend, collection="c", image=image, enrolled=enrolled)
    old_index = index(counted.backend, image)
    with system_context("test"):
        attendee_id = AttendeeFace.objects.get(pk=face.pk).attendee_id
    (old_match,) = old_result.matches
    ((attendee, key, similarity),) = match_rows(tenant_a.org)
    assert (attendee, key, similarity) == (attendee_id, old_match.face_key, pytest.approx(old_match.similarity))
    assert face_rows(tenant_a.org) == sorted((f.face_key, f.ref, f.descriptor) for f in old_index)
    assert (job(job_id).faces, job(job_id).searches) == (2, 2)


def rekognition_enrolled(org: Any, event: Any, stubber: Stubber) -> AttendeeFace:
    """Ann's selfie enrolled at the (stubbed) Rekognition backend as FACE_ID."""
    selfies = collection_name(tenant_id=org.pk, event_id=event.pk)
    stubber.add_response("list_faces", {"Faces": [], "FaceModelVersion": "7.0"})
    stubber.add_response(
        "index_faces",
        {"FaceRecords": [record(FACE_ID, 0.3, subject="face-1")], "UnindexedFaces": []},
        {**index_params(ANY, collection=selfies, subject=ANY), "MaxFaces": 1},
    )
    return enrolled_face(org, event, "ann")


@dataclasses.dataclass
class RekognitionJob:
    """A photo of a new event and its drop-in job, at the Rekognition backend (stubbed client)."""

    backend: RekognitionFaceBackend
    stubber: Stubber
    sent: list[str]
    event: Any
    ann: AttendeeFace | None
    photo: Any
    job_id: int
    photos: str
    index_params: dict[str, Any]

    def expect_indexed(self, face_id: str) -> None:
        """The photo's next IndexFaces (into the event's photo collection) indexes one face, `face_id`."""
        self.stubber.add_response("index_faces", {"FaceRecords": [record(face_id, 0.1)]}, self.index_params)


def a_rekognition_job(org: Any, stubbed: Any, monkeypatch: Any, *, ann_enrolled: bool = True) -> RekognitionJob:
    """The stubbed Rekognition backend in use; Ann enrolled at it (`ann_enrolled`); a photo of a new event,
    not indexed yet, and its job. `photos`: the event's photo collection; `index_params`: the photo's
    IndexFaces as botocore sends it."""
    backend, stubber, sent = stubbed
    monkeypatch.setitem(base._backends, "rekognition", backend)
    event = an_event(org)
    ann = rekognition_enrolled(org, event, stubber) if ann_enrolled else None
    photo, job_id = photo_of(org, event, [])
    photos = photo_collection_name(tenant_id=org.pk, event_id=event.pk)
    params = index_params(ANY, collection=photos, subject=f"photo-{photo.pk}")
    return RekognitionJob(backend, stubber, sent, event, ann, photo, job_id, photos, params)


@needs_db
@override_settings(DROPIN_FACE_BACKEND="rekognition")
def test_a_rekognition_job_indexes_the_photo_once_and_searches_its_faces(
    tenant_a: Any, stubbed: Any, monkeypatch: Any
) -> None:
    # given: the Rekognition backend (stubbed client); Ann enrolled; a photo not indexed yet
    rk = a_rekognition_job(tenant_a.org, stubbed, monkeypatch)
    stubber, sent, ann, job_id = rk.stubber, rk.sent, rk.ann, rk.job_id
    selfies = collection_name(tenant_id=tenant_a.org.pk, event_id=rk.event.pk)
    del sent[:]
    stubber.add_response(
        "index_faces",
        {"FaceRecords": [record(PHOTO_FACE_ID, 0.1)], "UnindexedFaces": [unindexed(0.6, "LOW_BRIGHTNESS")]},
        rk.index_params,
    )
    stubber.add_response("search_faces_by_image", {"FaceMatches": [match(FACE_ID, 99.0)]}, search_params(selfies))
    stubber.add_response("search_faces_by_image", {"FaceMatches": []}, search_params(selfies))
    # when: the job runs
    assert process(tenant_a.org, job_id) == "succeeded"
    # then: one IndexFaces into the photo collection detected the faces; no DetectFaces; one search per face
    assert sent == ["IndexFaces", "SearchFacesByImage", "SearchFacesByImage"]
    assert [(k, r) for k, r, _ in face_rows(tenant_a.org)] == [("x10y19w9h13", PHOTO_FACE_ID)]
    assert [(a, k) for a, k, _ in match_rows(tenant_a.org)] == [(ann.attendee_id, "x10y19w9h13")]
    assert (job(job_id).faces, job(job_id).searches) == (2, 2)
    assert outbox_payloads(TOPIC_FACE_FORGET) == []


@needs_db
@override_settings(DROPIN_FACE_BACKEND="rekognition")
def test_a_rekognition_job_that_fails_after_indexing_has_its_unstored_faces_forgotten(
    tenant_a: Any, stubbed: Any, monkeypatch: Any
) -> None:
    # given: Ann enrolled; a photo whose first run indexes it and then is throttled on the search
    rk = a_rekognition_job(tenant_a.org, stubbed, monkeypatch)
    stubber, sent, job_id, photos = rk.stubber, rk.sent, rk.job_id, rk.photos
    rk.expect_indexed(PHOTO_FACE_ID)
    stubber.add_client_error("search_faces_by_image", "ThrottlingException", "slow down", 400)
    # when: it runs and fails
    with pytest.raises(FaceBackendUnavailable):
        process(tenant_a.org, job_id)
    # then: nothing stored, and the face it indexed is to be forgotten (by FaceId, in the photo collection)
    assert face_rows(tenant_a.org) == []
    forget = {"backend": "rekognition", "collection": photos, "refs": [PHOTO_FACE_ID], "subjects": []}
    assert outbox_payloads(TOPIC_FACE_FORGET) == [forget]
    stubber.add_response(
        "delete_faces", {"DeletedFaces": [PHOTO_FACE_ID]}, {"CollectionId": photos, "FaceIds": [PHOTO_FACE_ID]}
    )
    run_forgets()
    # when: the retry indexes it again (a new FaceId) and succeeds
    rk.expect_indexed(RETRIED_FACE_ID)
    stubber.add_response("search_faces_by_image", {"FaceMatches": []})
    assert process(tenant_a.org, job_id) == "succeeded"
    # then: the new FaceId is stored, and nothing more is forgotten
    assert [r for _, r, _ in face_rows(tenant_a.org)] == [RETRIED_FACE_ID]
    assert len(outbox_payloads(TOPIC_FACE_FORGET)) == 1
    assert "DetectFaces" not in sent


@needs_db
@override_settings(DROPIN_FACE_BACKEND="rekognition")
def test_a_rekognition_job_that_lost_its_lease_after_indexing_has_its_unstored_faces_forgotten(
    tenant_a: Any, stubbed: Any, monkeypatch: Any
) -> None:
    # given: Ann enrolled; a photo whose run indexes it and searches it, slowly: its lease lapses
    rk = a_rekognition_job(tenant_a.org, stubbed, monkeypatch)
    job_id, photos = rk.job_id, rk.photos
    rk.expect_indexed(PHOTO_FACE_ID)
    rk.stubber.add_response("search_faces_by_image", {"FaceMatches": []})
    real_extend = FencedLease.extend

    def lapse_then_extend(lease: FencedLease, *args: Any, **kwargs: Any) -> None:
        get_redis_connection("default").delete(redis_key(lease_name(job_id)))
        real_extend(lease, *args, **kwargs)

    monkeypatch.setattr(FencedLease, "extend", lapse_then_extend)
    # when: it runs and finds its lease lost before recording
    with pytest.raises(LockLost):
        process(tenant_a.org, job_id)
    # then: nothing stored, and the face it indexed at Rekognition is to be forgotten: no run will
    # ever store that FaceId (the retry indexes the photo again under a new one)
    assert face_rows(tenant_a.org) == []
    forget = {"backend": "rekognition", "collection": photos, "refs": [PHOTO_FACE_ID], "subjects": []}
    assert outbox_payloads(TOPIC_FACE_FORGET) == [forget]


@needs_db
@override_settings(DROPIN_FACE_BACKEND="rekognition")
def test_a_rekognition_job_taken_over_while_its_search_failed_has_its_unstored_faces_forgotten(
    tenant_a: Any, stubbed: Any, monkeypatch: Any
) -> None:
    # given: a photo whose run indexes it; while its search is throttled a newer worker takes the lease
    rk = a_rekognition_job(tenant_a.org, stubbed, monkeypatch)
    job_id, photos = rk.job_id, rk.photos
    rk.expect_indexed(PHOTO_FACE_ID)

    def taken_over_then_throttled(**kwargs: Any) -> Any:
        get_redis_connection("default").delete(redis_key(lease_name(job_id)))
        with try_fenced_lock(lease_name(job_id), ttl=60) as newer:
            assert newer is not None
        raise FaceBackendUnavailable("throttled")

    monkeypatch.setattr(rk.backend, "match_photo", taken_over_then_throttled)
    # when: it runs, fails, and finds its lease gone when it records the failure
    with pytest.raises(StaleLeaseError):
        process(tenant_a.org, job_id)
    # then: the face it indexed is to be forgotten all the same
    forget = {"backend": "rekognition", "collection": photos, "refs": [PHOTO_FACE_ID], "subjects": []}
    assert outbox_payloads(TOPIC_FACE_FORGET) == [forget]


@needs_db
@override_settings(DROPIN_FACE_BACKEND="rekognition")
def test_the_backfill_indexes_a_photo_with_one_index_faces_call(tenant_a: Any, stubbed: Any, monkeypatch: Any) -> None:
    # given: a photo without an index, and the Rekognition backend (stubbed client)
    rk = a_rekognition_job(tenant_a.org, stubbed, monkeypatch, ann_enrolled=False)
    photo, sent = rk.photo, rk.sent
    rk.expect_indexed(PHOTO_FACE_ID)
    # when: the backfill indexes it, twice
    with tenant_context(tenant_a.org.pk):
        assert photo_faces_index(tenant_id=tenant_a.org.pk, photo_id=photo.pk) == 1
        assert photo_faces_index(tenant_id=tenant_a.org.pk, photo_id=photo.pk) is None
    # then: one IndexFaces was the whole analysis; its FaceId is stored once, nothing to forget
    assert sent == ["IndexFaces"]
    assert [r for _, r, _ in face_rows(tenant_a.org)] == [PHOTO_FACE_ID]
    assert outbox_payloads(TOPIC_FACE_FORGET) == []
