"""Logical partitions of the ledger: which projector unit an event belongs to.

An event's logical partition is `crc32("<tenant id>") % P`, where P is `LEDGER_PARTITIONS`.
For a tenant listed in `LEDGER_WHALE_TENANTS` (slugs or ids) it is
`crc32("<tenant id>:<client id>") % P`, so one very large studio spreads over many partitions
(one per integrator client, in effect) instead of saturating one projector. CRC-32 is stable
across processes and Python versions (unlike `hash()`, which is salted per process).

Ordering guarantees: events of one partition are applied in sequence order (= commit order).
Balances are sums, so applying different partitions in any relative order gives the same
result; what a partition change can disturb is only the *per-account* reading "sequence it
reflects" and the order in which one account's events become visible.

Changing P or the whale list safely (operator procedure, README-ready)
----------------------------------------------------------------------
1. Switch ingest to degraded mode (`LEDGER_DEGRADED_MODE=on`) or stop ingest, so no new events
   are sequenced under the old mapping (degraded debits wait in the buffer, nothing is lost).
2. Let the projectors drain to zero lag on every partition (`ledger_projection_lag_seconds`
   is 0 everywhere, or `manage.py ledger_slo`'s lag query / the admin checkpoint list shows
   checkpoint = head for every partition).
3. Change `LEDGER_PARTITIONS` / `LEDGER_WHALE_TENANTS` on every process (web, worker, beat,
   projector) and restart them; the new mapping is the new "partitioning generation".
4. Switch degraded mode off; the drain moves the buffered debits in under the new mapping.

Why this is safe: heads and checkpoints are keyed by partition number and never reset, so a
partition that existed before continues its sequence where it stopped, a new partition starts
at 1, and a partition no longer used keeps checkpoint = head. Projectors work on
`range(P)` plus every partition that has a head row, so even events sequenced under an old,
larger P are still projected. Skipping step 1-2 never loses or doubles money either; it only
lets one account's old and new events be applied out of their wall-clock order for a moment.
"""

from __future__ import annotations

import zlib

from django.conf import settings


def partition_count() -> int:
    count = int(settings.LEDGER_PARTITIONS)
    if count < 1:
        raise ValueError("LEDGER_PARTITIONS must be >= 1")
    return count


def is_whale(*, tenant_id: int, tenant_slug: str) -> bool:
    whales = {str(w).strip() for w in settings.LEDGER_WHALE_TENANTS if str(w).strip()}
    return str(tenant_id) in whales or tenant_slug in whales


def logical_partition(*, tenant_id: int, tenant_slug: str, client_id: str) -> int:
    """The logical partition for an event of `tenant_id` posted by `client_id`."""
    key = f"{tenant_id}:{client_id}" if is_whale(tenant_id=tenant_id, tenant_slug=tenant_slug) else f"{tenant_id}"
    return zlib.crc32(key.encode()) % partition_count()
