"""The demo event can show off find me: two of its photos hold the demo runner, and the demo
selfie finds exactly those two with the real (dlib) backend, one of them the demo's print."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from apps.catalog.models import Photo, Product
from apps.catalog.services import photo_generate_derivatives
from apps.dropin.findme import photos_find_by_selfie
from apps.dropin.models import DropInJob
from apps.dropin.services import dropin_job_process
from apps.tenancy.context import tenant_context
from apps.tenancy.management.commands.seed_demo import DEMO_ASSETS, DEMO_RUNNER_AT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_the_demo_selfie_finds_the_photos_of_the_demo_runner(settings: Any) -> None:
    # given: the demo studio seeded, and its photos processed as the worker would, with dlib
    settings.DROPIN_FACE_BACKEND = "local"
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    tenant_id, event_id = demo["tenant_id"], demo["catalog"]["event_id"]
    with tenant_context(tenant_id):
        photo_ids = list(Photo.objects.filter(event_id=event_id).order_by("pk").values_list("pk", flat=True))
        job_ids = list(DropInJob.objects.filter(photo_id__in=photo_ids).values_list("pk", flat=True))
    with tenant_context(tenant_id):  # as the consumer tasks run them
        for photo_id in photo_ids:
            photo_generate_derivatives(tenant_id=tenant_id, photo_id=photo_id)
        for job_id in job_ids:
            dropin_job_process(job_id=job_id)
    # when: a shopper searches with the demo selfie
    hits = photos_find_by_selfie(
        tenant_id=tenant_id, event_id=event_id, image=(DEMO_ASSETS / "selfie.jpg").read_bytes()
    )
    # then: exactly the photos the runner was pasted into
    assert len(job_ids) == len(photo_ids) == 6
    assert sorted(hit.photo_id for hit in hits) == [photo_ids[n - 1] for n in sorted(DEMO_RUNNER_AT)]
    # and: the demo's print is of one of them, so the shopper can buy a print of themself
    with tenant_context(tenant_id):
        print_photo = Product.objects.get(pk=demo["catalog"]["print_product_id"]).photo_id
    assert print_photo in {hit.photo_id for hit in hits}
