"""Celery tasks of the ledger domain (thin: call a service).

* `ledger.partitions_maintain` (beat, hourly): create the monthly event partitions ahead.
* `ledger.archive` (beat, daily): archive and drop months past retention (never unprojected
  ones), then prune drained degraded-mode buffer rows.
* `ledger.buffer_drain` (beat, every 5 s): move degraded-mode debits into the ledger at
  `LEDGER_DRAIN_RATE`, for at most a few seconds per run (one drainer at a time).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.ledger.maintenance import ledger_archive, ledger_buffer_prune, ledger_partitions_ensure
from apps.ledger.services import ledger_buffer_drain

DRAIN_SECONDS_PER_RUN = 4.0


@shared_task(name="ledger.partitions_maintain", acks_late=True)
def partitions_maintain() -> list[str]:
    return ledger_partitions_ensure()


@shared_task(name="ledger.archive", acks_late=True)
def archive() -> dict[str, Any]:
    result = ledger_archive()
    pruned = ledger_buffer_prune()
    return {"archived": result.archived, "kept_unprojected": result.kept_unprojected, "buffer_pruned": pruned}


@shared_task(name="ledger.buffer_drain", acks_late=True)
def buffer_drain() -> dict[str, int]:
    result = ledger_buffer_drain(max_seconds=DRAIN_SECONDS_PER_RUN)
    return {"read": result.read, "created": result.created, "duplicates": result.duplicates}
