""" "Find me" page: a selfie search over an event's photos through the real find-me service and the
fake face backend (an image's faces are identities written in its EXIF description)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.catalog.models import Event, Photo
from apps.dropin.faces.fake import UNAVAILABLE, fake_face_image
from apps.dropin.services import dropin_job_process
from apps.ops.killswitch import kill_switch_engage
from apps.tenancy.context import tenant_context
from tests.dropin.helpers import photo_of
from tests.web.shop.conftest import an_event, make_ready

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def event(tenant_a: Any) -> Event:
    return an_event(tenant_a.org, slug="city-run", title="City Run")


def shown(tenant: Any, event: Event, identities: list[str], *, ready: bool = True) -> Photo:
    """A photo of `identities` uploaded to the event, its drop-in job run as the worker would
    (which indexes its faces), and (unless `ready` is False) its derivatives rendered."""
    photo, job_id = photo_of(tenant.org, event, identities)
    with tenant_context(tenant.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"
    return make_ready(photo) if ready else photo


def find_me_path(tenant: Any, event: Event) -> str:
    return f"/s/{tenant.org.slug}/{event.slug}/find-me"


def search(browser: Client, tenant: Any, event: Event, image: bytes) -> Any:
    return browser.post(find_me_path(tenant, event), {"image": SimpleUploadedFile("me.png", image, "image/png")})


def photo_link(tenant: Any, event: Event, photo: Photo) -> str:
    return f'href="/s/{tenant.org.slug}/{event.slug}/photos/{photo.pk}/"'


def test_the_form_says_the_selfie_is_not_stored(browser: Client, tenant_a: Any, event: Event) -> None:
    response = browser.get(find_me_path(tenant_a, event))
    assert response.status_code == 200
    body = response.content.decode()
    assert "used for this search only and is not stored" in body
    assert 'enctype="multipart/form-data"' in body and 'name="image"' in body


def test_a_selfie_finds_the_ready_photos_it_appears_in(browser: Client, tenant_a: Any, event: Event) -> None:
    # given: Ann alone, Ann with Bob, Bob alone, and a photo of Ann still being rendered
    alone, together, bob = (shown(tenant_a, event, ids) for ids in (["ann"], ["ann", "bob"], ["bob"]))
    rendering = shown(tenant_a, event, ["ann"], ready=False)
    # when: Ann searches with her selfie
    response = search(browser, tenant_a, event, fake_face_image(["ann"]))
    # then: the two ready photos of her, linked to their pages, and nothing else
    assert response.status_code == 200
    body = response.content.decode()
    assert "2 photos of you" in body
    assert photo_link(tenant_a, event, alone) in body
    assert photo_link(tenant_a, event, together) in body
    assert photo_link(tenant_a, event, bob) not in body
    assert photo_link(tenant_a, event, rendering) not in body


def test_a_selfie_found_nowhere_says_so(browser: Client, tenant_a: Any, event: Event) -> None:
    shown(tenant_a, event, ["bob"])
    response = search(browser, tenant_a, event, fake_face_image(["carol"]))
    assert response.status_code == 200
    assert "No photos of you found" in response.content.decode()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (fake_face_image([]), "We could not find a face in that photo."),
        (fake_face_image(["ann", "bob"]), "That photo shows more than one face."),
        (b"this is not an image", "We could not read that file as a photo."),
    ],
)
def test_a_rejected_selfie_is_a_422_with_what_to_do(browser: Client, tenant_a: Any, event: Event, image: bytes,
                                                    message: str) -> None:  # fmt: skip
    shown(tenant_a, event, ["ann"])
    response = search(browser, tenant_a, event, image)
    assert response.status_code == 422
    body = response.content.decode()
    assert message in body
    assert 'name="image"' in body  # the form again


def test_face_backend_outage_is_a_503_try_again_shortly(browser: Client, tenant_a: Any, event: Event) -> None:
    shown(tenant_a, event, ["ann"])
    response = search(browser, tenant_a, event, fake_face_image([UNAVAILABLE]))
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "try again shortly" in response.content.decode()


def test_find_me_switched_off_is_a_503(browser: Client, tenant_a: Any, event: Event) -> None:
    shown(tenant_a, event, ["ann"])
    kill_switch_engage(capability="dropin", reason="backend incident", actor_label="test")
    response = search(browser, tenant_a, event, fake_face_image(["ann"]))
    assert response.status_code == 503
    assert "try again shortly" in response.content.decode()


def test_no_file_and_too_large_files_are_refused(browser: Client, tenant_a: Any, event: Event, settings: Any) -> None:
    settings.SHOP_FINDME_MAX_BYTES = 2_000
    selfie = fake_face_image(["ann"])
    assert len(selfie) < 2_000
    missing = browser.post(find_me_path(tenant_a, event), {})
    over_limit = search(browser, tenant_a, event, selfie + b"\0" * 3_000)  # read, then refused by size
    way_over = search(browser, tenant_a, event, b"\0" * 200_000)  # refused from its Content-Length
    assert missing.status_code == 400
    assert "Choose a selfie" in missing.content.decode()
    for response in (over_limit, way_over):
        assert response.status_code == 413
        assert "That file is too large; the limit is 2.0\xa0KB." in response.content.decode()
    assert search(browser, tenant_a, event, selfie).status_code == 200  # the limit is not a ban


def test_searches_are_rate_limited_per_session(browser: Client, tenant_a: Any, event: Event, settings: Any) -> None:
    settings.SHOP_FINDME_SESSION_RATE = "2/min"
    shown(tenant_a, event, ["ann"])
    selfie = fake_face_image(["ann"])
    statuses = [search(browser, tenant_a, event, selfie).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = search(browser, tenant_a, event, selfie)
    assert int(limited["Retry-After"]) >= 1
    assert "Too many searches" in limited.content.decode()
    # and: another session (same address, whose own limit is wider) may still search
    assert search(Client(), tenant_a, event, selfie).status_code == 200
