"""`manage.py dropin_index_photos [--tenant SLUG] [--event ID] [--batch N]`: index for "find me"
the faces of photos that have no index by the configured face backend yet (photos processed
before find me existed, photos without a drop-in job, or after a change of backend).

Idempotent: a photo indexed already (by its drop-in job meanwhile, or an earlier run) is
skipped; `PhotoIndex` (unique per photo and backend) is the arbiter. Photos are taken in id
order, `--batch` at a time (keyset, so a long run never rereads what it passed), each indexed
outside any transaction (the backend call) and stored in its own short transaction, in its
tenant's context. An unreadable original is reported and left unindexed; a passing backend
failure is reported and the photo left for the next run (exit status 1). The drop-in kill
switch stops the run (exit status 1).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.dropin.faces import FaceBackendUnavailable, UnreadableImage
from apps.dropin.selectors import photos_to_index
from apps.dropin.services import photo_faces_index
from apps.ops.killswitch import CapabilityDisabled
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization


class Command(BaseCommand):
    help = "Index the faces of photos not indexed for find me yet (idempotent, in batches)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=None, help="only this studio's photos (its slug)")
        parser.add_argument("--event", type=int, default=None, help="only this event's photos (its id)")
        parser.add_argument("--batch", type=int, default=200, help="photos read per query (default 200)")

    def handle(self, *args: Any, **options: Any) -> None:
        backend = settings.DROPIN_FACE_BACKEND
        batch = max(1, int(options["batch"]))
        tenant_id = None
        with system_context("drop-in photo index backfill"):
            if options["tenant"]:
                tenant_id = Organization.objects.filter(slug=options["tenant"]).values_list("pk", flat=True).first()
                if tenant_id is None:
                    raise CommandError(f"no studio with slug {options['tenant']!r}")
        totals = {"indexed": 0, "faces": 0, "already": 0, "unreadable": 0, "failed": 0}
        after_id = 0
        while True:
            with system_context("drop-in photo index backfill"):
                photos = photos_to_index(
                    backend=backend, after_id=after_id, limit=batch, tenant_id=tenant_id, event_id=options["event"]
                )
            if not photos:
                break
            for photo_id, photo_tenant_id in photos:
                try:
                    with tenant_context(photo_tenant_id):
                        faces = photo_faces_index(tenant_id=photo_tenant_id, photo_id=photo_id)
                except UnreadableImage as exc:
                    totals["unreadable"] += 1
                    self.stderr.write(f"photo {photo_id}: unreadable original ({exc}); skipped")
                    continue
                except FaceBackendUnavailable as exc:
                    totals["failed"] += 1
                    self.stderr.write(f"photo {photo_id}: face backend unavailable ({exc}); left for the next run")
                    continue
                except CapabilityDisabled as exc:
                    self._summary(totals, backend)
                    raise CommandError(f"stopped: {exc.detail}") from exc
                if faces is None:
                    totals["already"] += 1
                else:
                    totals["indexed"] += 1
                    totals["faces"] += faces
            after_id = photos[-1][0]
            done = totals["indexed"] + totals["already"] + totals["unreadable"] + totals["failed"]
            self.stdout.write(
                f"{done} photo(s) processed (last id {after_id}): {totals['indexed']} indexed "
                f"({totals['faces']} faces), {totals['unreadable']} unreadable, {totals['failed']} failed"
            )
        self._summary(totals, backend)
        if totals["failed"]:
            raise SystemExit(1)

    def _summary(self, totals: dict[str, int], backend: str) -> None:
        line = (
            f"{backend}: {totals['indexed']} photo(s) indexed with {totals['faces']} face(s); "
            f"{totals['already']} indexed meanwhile, {totals['unreadable']} unreadable, {totals['failed']} failed"
        )
        self.stdout.write(self.style.ERROR(line) if totals["failed"] else self.style.SUCCESS(line))
