"""Find me: photo faces indexed by the drop-in job (once), the backfill command, and the shoppers'
selfie search over an event's photos (fake backend, and real dlib end to end; real Postgres with
RLS as the runtime role, real Redis)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import override_settings
from PIL import Image

from apps.catalog import storage
from apps.catalog.models import Event, Photo
from apps.dropin.faces import FaceBackendUnavailable, NoFaceFound, SeveralFaces, UnreadableImage
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.findme import FindMeUnavailable, PhotoHit, photos_find_by_selfie
from apps.dropin.metrics import findme_search_counts
from apps.dropin.models import DropInJob, PhotoFace, PhotoIndex
from apps.dropin.services import dropin_job_process, photo_faces_index
from apps.ops.killswitch import kill_switch_engage
from apps.ops.metrics import render
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.dropin.helpers import an_event, enrolled_face, job, photo_of
from tests.factories.catalog import PhotoFactory

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = Path(__file__).parent / "fixtures"


def process(org: Organization, job_id: int) -> str:
    with tenant_context(org.pk):
        return dropin_job_process(job_id=job_id).outcome


def ready(photo: Photo) -> Photo:
    """The photo's derivatives rendered (what the gallery needs before it shows the photo)."""
    with system_context("test: derivatives"):
        Photo.objects.filter(pk=photo.pk).update(derivatives_status="ready", preview="p.jpg", thumbnail="t.jpg")
    return photo


def shown(org: Organization, event: Event, identities: list[str], *, is_ready: bool = True) -> Photo:
    """A photo of `identities` uploaded to the event and its drop-in job run, as the worker would."""
    photo, job_id = photo_of(org, event, identities)
    assert process(org, job_id) == "succeeded"
    return ready(photo) if is_ready else photo


def find(org: Organization, event: Event, identity: str | list[str], **kwargs: Any) -> list[PhotoHit]:
    identities = [identity] if isinstance(identity, str) else identity
    return photos_find_by_selfie(tenant_id=org.pk, event_id=event.pk, image=fake_face_image(identities), **kwargs)


def index_rows(org: Organization) -> list[tuple[int, str, int]]:
    with system_context("test: index"):
        return list(
            PhotoIndex.objects.filter(tenant=org).order_by("photo_id").values_list("photo_id", "backend", "faces")
        )


def face_rows(org: Organization) -> list[tuple[int, str, str]]:
    with system_context("test: faces"):
        return list(
            PhotoFace.objects.filter(tenant=org)
            .order_by("photo_id", "face_key")
            .values_list("photo_id", "face_key", "ref")
        )


# --- indexing by the drop-in job -------------------------------------------------------------


def test_a_processed_photo_is_indexed_once_even_when_its_job_is_redelivered(tenant_a: Any) -> None:
    # given: a photo of Bob and Ann in an event where nobody registered a selfie
    event = an_event(tenant_a.org)
    photo, job_id = photo_of(tenant_a.org, event, ["bob", "ann"])
    # when: its job runs, then its message is delivered again
    assert process(tenant_a.org, job_id) == "succeeded"
    assert process(tenant_a.org, job_id) == "skipped"
    # then: its two faces are indexed once (and nothing was searched or billed)
    assert index_rows(tenant_a.org) == [(photo.pk, "fake", 2)]
    assert face_rows(tenant_a.org) == [(photo.pk, "fake-0-bob", "bob"), (photo.pk, "fake-1-ann", "ann")]
    assert job(job_id).searches == 0


def test_a_worker_that_died_mid_run_and_a_photo_indexed_by_the_backfill_are_not_indexed_twice(tenant_a: Any) -> None:
    # given: Ann registered; one photo whose first run died after starting, one indexed by the backfill first
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    died, died_job = photo_of(tenant_a.org, event, ["ann"])
    early, early_job = photo_of(tenant_a.org, event, ["ann", "cy"])
    with system_context("test"):
        DropInJob.objects.filter(pk=died_job).update(status="running", attempts=1, started_at=died.created_at)
    with tenant_context(tenant_a.org.pk):
        assert photo_faces_index(tenant_id=tenant_a.org.pk, photo_id=early.pk) == 2
        assert photo_faces_index(tenant_id=tenant_a.org.pk, photo_id=early.pk) is None
    # when: both jobs run
    assert process(tenant_a.org, died_job) == "succeeded"
    assert process(tenant_a.org, early_job) == "succeeded"
    # then: each photo indexed once, and drop-in matched Ann in both as before
    assert index_rows(tenant_a.org) == [(died.pk, "fake", 1), (early.pk, "fake", 2)]
    assert len(face_rows(tenant_a.org)) == 3
    assert (job(died_job).matches, job(early_job).matches) == (1, 1)


def test_a_passing_backend_failure_while_indexing_stores_nothing_and_is_retried(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    _, job_id = photo_of(tenant_a.org, event, ["ann", "!unavailable"])
    with pytest.raises(FaceBackendUnavailable):
        process(tenant_a.org, job_id)
    assert (job(job_id).status, index_rows(tenant_a.org), face_rows(tenant_a.org)) == ("running", [], [])


def test_constraints_refuse_inconsistent_index_rows(tenant_a: Any, tenant_b: Any) -> None:
    # given: a photo indexed with one face, another photo of the event, and a photo of another studio
    event = an_event(tenant_a.org)
    photo = shown(tenant_a.org, event, ["ann"])
    other, _ = photo_of(tenant_a.org, event, [])
    foreign, _ = photo_of(tenant_b.org, an_event(tenant_b.org), [])
    with system_context("test: constraints"):
        index = PhotoIndex.objects.get(photo=photo)
        face = {"tenant": tenant_a.org, "index": index, "photo": photo, "event": event, "backend": "fake", "ref": "x"}
        bad_rows = [
            (PhotoFace, {**face, "face_key": "fake-0-ann"}),  # the same face twice
            (PhotoFace, {**face, "face_key": "k", "photo": other}),  # a face of another photo than its index's
            (PhotoFace, {**face, "face_key": "k", "backend": "local", "descriptor": b""}),  # local without descriptor
            (PhotoFace, {**face, "face_key": "k", "descriptor": b"\x00" * 100}),  # a descriptor of the wrong size
            (PhotoIndex, {"tenant": tenant_a.org, "photo": photo, "event": event, "backend": "fake"}),  # indexed twice
            (
                PhotoIndex,
                {"tenant": tenant_a.org, "photo": foreign, "event": event, "backend": "fake"},
            ),  # other studio's
            (PhotoIndex, {"tenant": tenant_a.org, "photo": other, "event": event, "backend": "", "faces": 0}),
            (PhotoIndex, {"tenant": tenant_a.org, "photo": other, "event": event, "backend": "fake", "faces": -1}),
        ]
        for model, values in bad_rows:
            with pytest.raises(IntegrityError), transaction.atomic():
                model.objects.create(**values)  # type: ignore[attr-defined]
    # and: another studio sees none of it
    with tenant_context(tenant_b.org.pk):
        assert not PhotoIndex.objects.exists() and not PhotoFace.objects.exists()


# --- the search ---------------------------------------------------------------------------------


def test_find_me_returns_the_events_ready_photos_showing_the_selfie_and_nothing_else(
    tenant_a: Any, tenant_b: Any
) -> None:
    # given: an event's photos (uploaded before anyone registered), one not rendered yet;
    # another event of the studio and another studio's event, with photos of Ann too
    event = an_event(tenant_a.org)
    ann = shown(tenant_a.org, event, ["ann"])
    bob_and_ann = shown(tenant_a.org, event, ["bob", "ann"])
    shown(tenant_a.org, event, ["bob"])
    shown(tenant_a.org, event, [])
    shown(tenant_a.org, event, ["ann"], is_ready=False)
    shown(tenant_a.org, an_event(tenant_a.org), ["ann"])
    foreign_event = an_event(tenant_b.org)
    foreign = shown(tenant_b.org, foreign_event, ["ann"])
    before = findme_search_counts()
    # when: Ann searches the event with her selfie
    hits = find(tenant_a.org, event, "ann")
    # then: exactly the event's ready photos showing her, one hit each
    assert hits == [PhotoHit(ann.pk, 1.0), PhotoHit(bob_and_ann.pk, 1.0)]
    assert find(tenant_a.org, event, "ann", limit=1) == [PhotoHit(ann.pk, 1.0)]
    assert find(tenant_a.org, event, "zoe") == []
    # and: the other studio's event is not reachable through this studio, and vice versa
    assert (
        photos_find_by_selfie(tenant_id=tenant_a.org.pk, event_id=foreign_event.pk, image=fake_face_image(["ann"]))
        == []
    )
    assert photos_find_by_selfie(tenant_id=tenant_b.org.pk, event_id=event.pk, image=fake_face_image(["ann"])) == []
    assert find(tenant_b.org, foreign_event, "ann") == [PhotoHit(foreign.pk, 1.0)]
    # and: the searches are counted by outcome
    after = findme_search_counts()
    assert (after["found"] - before["found"], after["none"] - before["none"]) == (3, 3)


def test_find_me_honours_the_drop_in_threshold_and_the_face_bound(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    first = shown(tenant_a.org, event, ["ann"])
    shown(tenant_a.org, event, ["ann"])
    with override_settings(FINDME_MAX_FACES=1, FINDME_BATCH_SIZE=1):
        assert find(tenant_a.org, event, "ann") == [PhotoHit(first.pk, 1.0)]
    with override_settings(FINDME_BATCH_SIZE=1):
        assert len(find(tenant_a.org, event, "ann")) == 2
    with override_settings(DROPIN_MATCH_THRESHOLD=1.01):
        assert find(tenant_a.org, event, "ann") == []


def test_an_unusable_selfie_or_a_failing_backend_raises_and_is_counted(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    shown(tenant_a.org, event, ["ann"])
    before = findme_search_counts()
    with pytest.raises(NoFaceFound):
        find(tenant_a.org, event, [])
    with pytest.raises(SeveralFaces):
        find(tenant_a.org, event, ["ann", "bob"])
    with pytest.raises(UnreadableImage):
        photos_find_by_selfie(tenant_id=tenant_a.org.pk, event_id=event.pk, image=b"not an image")
    with override_settings(DROPIN_MAX_SELFIE_BYTES=100), pytest.raises(UnreadableImage):
        find(tenant_a.org, event, "ann")
    # a few hundred bytes whose header claims 49 megapixels: refused from the header, never decoded
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, format="PNG")
    claimed = bytearray(bomb.getvalue())
    claimed[16:24] = struct.pack(">II", 7000, 7000)
    claimed[29:33] = struct.pack(">I", zlib.crc32(bytes(claimed[12:29])) & 0xFFFFFFFF)
    with pytest.raises(UnreadableImage):
        photos_find_by_selfie(tenant_id=tenant_a.org.pk, event_id=event.pk, image=bytes(claimed))
    with pytest.raises(FaceBackendUnavailable):
        find(tenant_a.org, event, "!unavailable")
    after = findme_search_counts()
    assert (after["rejected"] - before["rejected"], after["unavailable"] - before["unavailable"]) == (5, 1)


def test_find_me_is_unavailable_while_drop_in_is_off_or_its_kill_switch_engaged(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    shown(tenant_a.org, event, ["ann"])
    before = findme_search_counts()["disabled"]
    with override_settings(DROPIN_ENABLED=False), pytest.raises(FindMeUnavailable) as off:
        find(tenant_a.org, event, "ann")
    assert off.value.status_code == 503
    kill_switch_engage(capability="dropin", reason="backend incident", actor_label="ops")
    with pytest.raises(FindMeUnavailable):
        find(tenant_a.org, event, "ann")
    assert findme_search_counts()["disabled"] - before == 2
    assert 'darkroom_findme_searches_total{outcome="disabled"}' in render().decode()


# --- backfill -----------------------------------------------------------------------------------


def old_photo(org: Organization, event: Event, identities: list[str]) -> Photo:
    """A photo processed before find me existed: its job succeeded, nothing indexed."""
    with tenant_context(org.pk):
        photo: Photo = PhotoFactory(event=event, image_width=96, image_height=64)  # type: ignore[assignment]
    storage.write_exact(name=str(photo.original.name), data=fake_face_image(identities, size=(96, 64), fmt="JPEG"))
    return ready(photo)


def test_the_backfill_indexes_what_is_missing_once_per_studio_or_event(tenant_a: Any, tenant_b: Any) -> None:
    # given: three old photos of one event, one of another event, one of another studio, one unreadable
    event, other_event = an_event(tenant_a.org), an_event(tenant_a.org)
    photos = [old_photo(tenant_a.org, event, ids) for ids in (["ann"], ["bob", "ann"], [])]
    elsewhere = old_photo(tenant_a.org, other_event, ["ann"])
    old_photo(tenant_b.org, an_event(tenant_b.org), ["ann"])
    broken = old_photo(tenant_a.org, event, ["ann"])
    storage.write_exact(name=str(broken.original.name), data=b"garbage")
    assert find(tenant_a.org, event, "ann") == []
    # when: the backfill runs for the event, in batches of two
    out, err = io.StringIO(), io.StringIO()
    call_command("dropin_index_photos", "--event", str(event.pk), "--batch", "2", stdout=out, stderr=err)
    # then: its readable photos are indexed and found; progress and the unreadable photo are reported
    assert [photo_id for photo_id, _, _ in index_rows(tenant_a.org)] == [p.pk for p in photos]
    assert find(tenant_a.org, event, "ann") == [PhotoHit(photos[0].pk, 1.0), PhotoHit(photos[1].pk, 1.0)]
    assert "3 photo(s) indexed with 3 face(s)" in out.getvalue() and "2 photo(s) processed" in out.getvalue()
    assert f"photo {broken.pk}: unreadable" in err.getvalue()
    # when: it runs again for the studio, then for everyone
    again = io.StringIO()
    call_command("dropin_index_photos", "--tenant", tenant_a.org.slug, stdout=again, stderr=io.StringIO())
    # then: only the other event's photo is new; the other studio is untouched
    assert "1 photo(s) indexed with 1 face(s)" in again.getvalue()
    assert find(tenant_a.org, other_event, "ann") == [PhotoHit(elsewhere.pk, 1.0)]
    assert len(index_rows(tenant_b.org)) == 0
    call_command("dropin_index_photos", stdout=io.StringIO(), stderr=io.StringIO())
    assert len(index_rows(tenant_b.org)) == 1 and len(index_rows(tenant_a.org)) == 4


# --- real dlib, end to end -----------------------------------------------------------------------


def jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@override_settings(DROPIN_FACE_BACKEND="local")
def test_real_dlib_finds_a_shopper_in_the_photos_of_the_event(tenant_a: Any) -> None:
    # given: three photos of the event (the astronaut, Grace Hopper, both) processed by the local backend
    event = an_event(tenant_a.org)
    astronaut = Image.open(FIXTURES / "astronaut.png").convert("RGB").crop((95, 0, 345, 270))
    hopper = Image.open(FIXTURES / "grace_hopper.jpg").convert("RGB").crop((120, 40, 430, 380))
    hopper = hopper.resize((hopper.width * 55 // 100, hopper.height * 55 // 100))
    scenes = []
    for pastes in ([(astronaut, (300, 120))], [(hopper, (200, 100))], [(astronaut, (40, 90)), (hopper, (520, 100))]):
        img = Image.new("RGB", (900, 500), (118, 128, 140))
        for piece, position in pastes:
            img.paste(piece, position)
        scenes.append(img)
    photos = []
    for scene in scenes:
        photo, job_id = photo_of(tenant_a.org, event, [])
        storage.write_exact(name=str(photo.original.name), data=jpeg(scene))
        assert process(tenant_a.org, job_id) == "succeeded"
        photos.append(ready(photo))
    with system_context("test: descriptors"):
        assert all(len(bytes(d)) == 512 for d in PhotoFace.objects.values_list("descriptor", flat=True))
    # when: the astronaut searches with another picture of herself
    selfie = jpeg(Image.open(FIXTURES / "astronaut.png").convert("RGB").crop((60, 0, 400, 330)))
    hits = photos_find_by_selfie(tenant_id=tenant_a.org.pk, event_id=event.pk, image=selfie)
    # then: the two photos she is in, and not Grace Hopper's
    assert sorted(hit.photo_id for hit in hits) == [photos[0].pk, photos[2].pk]
    assert all(0.4 <= hit.similarity <= 1.0 for hit in hits)
