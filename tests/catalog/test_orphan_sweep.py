"""Originals of uploads that never committed and were not discarded (the uploader crashed) are
swept once past the grace period; originals a Photo names, and recent files of uploads that may
still commit, are kept."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.catalog import storage
from apps.catalog.models import Photo
from apps.catalog.services import originals_sweep_orphans, photo_create, photo_original_store
from apps.tenancy.context import tenant_context
from tasks.catalog import sweep_orphan_originals
from tests.factories.catalog import EventFactory, PhotoFactory, image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_prefix(settings):
    """Each test stores under its own private prefix: the in-memory storage outlives a test, and
    files other tests left (ids reused after a flush) must not count here."""
    settings.CATALOG_PRIVATE_PREFIX = f"private-{uuid.uuid4().hex[:8]}"


class UploadRolledBack(Exception):
    pass


def _orphan(event) -> str:
    """A stored original no Photo names (as a rolled-back upload leaves it)."""
    return storage.save_original(
        name=storage.original_name(tenant_id=event.tenant_id, event_id=event.pk, extension="jpg"),
        content=io.BytesIO(image_bytes(64, 48)),
    )


def test_an_upload_that_died_before_discarding_leaves_an_original_that_the_sweep_deletes(tenant_a):
    # given: an original stored, its photo's transaction rolled back, and the uploader gone
    # before it could discard the original (a crashed process)
    event = EventFactory(tenant=tenant_a.org)
    data = image_bytes(320, 240)
    stored = photo_original_store(
        tenant_id=tenant_a.org.pk,
        event_id=event.pk,
        uploaded_by=tenant_a.owner,
        image=io.BytesIO(data),
        image_size=len(data),
    )
    with pytest.raises(UploadRolledBack), transaction.atomic():
        photo_create(tenant_id=tenant_a.org.pk, uploaded_by=tenant_a.owner, stored=stored)
        raise UploadRolledBack
    left_behind = stored.name
    with tenant_context(tenant_a.org.pk):
        assert not Photo.objects.filter(original=left_behind).exists()
    assert default_storage.exists(left_behind)

    # when: the sweep runs past the grace period
    report = originals_sweep_orphans(older_than=timezone.now() + timedelta(seconds=1))

    # then: the file is gone, and only it
    assert not default_storage.exists(left_behind)
    assert (report.deleted, report.kept_recent) == (1, 0)


def test_originals_a_photo_names_and_recent_orphans_are_kept(tenant_a, tenant_b):
    # given: photos of two tenants, an old orphan, then (after the cutoff) a recent one
    photo_a = PhotoFactory(event=EventFactory(tenant=tenant_a.org))
    photo_b = PhotoFactory(event=EventFactory(tenant=tenant_b.org))
    old_orphan = _orphan(photo_a.event)
    cutoff = timezone.now() + timedelta(microseconds=1)
    while timezone.now() <= cutoff:
        pass
    recent_orphan = _orphan(photo_b.event)

    # when: the sweep runs with that cutoff, twice
    first = originals_sweep_orphans(older_than=cutoff)
    again = originals_sweep_orphans(older_than=cutoff)

    # then: only the old orphan is deleted; every photo keeps its original; a repeat deletes nothing
    assert not default_storage.exists(old_orphan)
    assert default_storage.exists(recent_orphan)
    assert default_storage.exists(photo_a.original.name) and default_storage.exists(photo_b.original.name)
    assert (first.deleted, first.kept_recent, first.files) == (1, 1, 4)
    assert (again.deleted, again.kept_recent, again.files) == (0, 1, 3)


def test_the_beat_task_keeps_orphans_younger_than_the_grace_period(tenant_a, settings):
    # given: a fresh orphan and the default grace (hours)
    orphan = _orphan(EventFactory(tenant=tenant_a.org))
    settings.CATALOG_ORPHAN_GRACE_HOURS = 1

    # when: the beat task runs
    result = sweep_orphan_originals.apply().get()

    # then: the orphan may still belong to an upload in flight: kept
    assert default_storage.exists(orphan)
    assert result["deleted"] == 0 and result["kept_recent"] >= 1


def test_a_storage_without_any_original_yet_sweeps_nothing(tenant_a):
    # given: nothing was ever uploaded under this test's prefix
    # when / then: the sweep reports an empty walk instead of failing
    report = originals_sweep_orphans(older_than=timezone.now())
    assert (report.events, report.files, report.deleted) == (0, 0, 0)
