""" "One worker at a time", fenced by the database: a Redis lock plus a lease epoch in Postgres.

Usage::

    with fenced_lock("inventory:sku:42", ttl=30) as lease:   # LockBusy if someone holds it
        for batch in batches:
            lease.extend()                                   # LockLost if Redis no longer has us
            with lease.atomic():                             # transaction + fence check
                Reservation.objects.filter(...).update(...)

    with try_fenced_lock("payouts:batch", ttl=60) as lease:  # None if busy
        if lease is None:
            return
        ...

Two layers, with different jobs (DESIGN.md invariant 2: Postgres is the arbiter):

1. **Redis lock** (redis-py `Lock` on the django-redis "default" client, key
   `<cache KEY_PREFIX>:lock:<name>`): `SET NX PX` with a random token and a TTL; `extend` and
   `release` are Lua compare-and-set/compare-and-delete scripts, so a holder never extends or
   deletes another holder's key. It keeps a second worker from *starting*, which saves work.
   It cannot promise exclusion: the TTL runs out under a slow or paused holder, a restarted
   Redis forgets keys, a failover loses them.

2. **Database lease** (`core_lease`, one row per name): right after taking the Redis key the
   acquirer commits, in its own transaction,
   ``INSERT ... ON CONFLICT (name) DO UPDATE SET epoch = core_lease.epoch + 1 ... RETURNING epoch``
   and keeps that epoch for the whole tenure. A protected write calls `lease.check()` inside its
   own transaction, which runs
   ``SELECT 1 FROM core_lease WHERE name = %s AND epoch = %s AND released_at IS NULL FOR SHARE``
   and raises `StaleLeaseError` (rolling the write back) when no such row exists.

Guarantee. Let T be a transaction on the "default" connection in which `lease.check()` returned
for epoch e (and the savepoint it ran in was not rolled back). Then T commits before any
acquisition of an epoch > e commits, hence before the next holder does anything; and if an
acquisition of a newer epoch committed first, T cannot commit at all. Why: the FOR SHARE row
lock held by T until it ends conflicts with the row lock the bump's ON CONFLICT DO UPDATE needs.
* Bump committed before the check: the check's statement sees the new epoch (READ COMMITTED
  takes a snapshot per statement) and raises StaleLeaseError. Under REPEATABLE READ or
  SERIALIZABLE with an older snapshot, Postgres raises a serialization failure instead; either
  way T cannot commit.
* Bump in flight (uncommitted) during the check: the check waits for it; when it commits,
  Postgres re-evaluates the WHERE against the new row version (epoch e + 1), finds no row, and
  the check raises. If the bump rolls back instead, the check passes and the epoch is unchanged.
* Check first: the bump waits until T commits or rolls back. T's writes are then in the
  database before the new holder's epoch exists, so the new holder reads them.
So writes of two holders never interleave, and no write commits under a superseded epoch.
This holds whatever happened to the Redis key (expired, deleted, Redis restarted).

What it does not cover:
* Writes in T that are outside the check's scope: call `check()` in the same atomic block as
  the writes or in an enclosing one. A row lock taken after a savepoint is released by
  ROLLBACK TO SAVEPOINT, so a check inside a nested block that is rolled back protects nothing.
  `lease.atomic()` does it right: it opens the block and checks first.
* Writes on another connection or database, and effects outside Postgres (provider calls,
  mail): those need their own idempotency (e.g. the payout id as the provider's key).
* A holder whose Redis key expired while nobody else acquired still passes the check. That is
  intended: it is still the newest epoch, so nobody else can have written.
* A new acquisition waits for the previous holder's open protected transaction to finish, at
  most `ttl` seconds (lock_timeout); past that it gives up with LockBusy.

Rules for callers: acquire outside any transaction (the bump is a durable atomic block; inside
one Django raises RuntimeError), use one lease from one thread, keep transactions short, and
call `extend()` between units of work that may outlast the TTL.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import LockNotOwnedError, RedisError

from apps.core.problems import BACKGROUND_WORK_WHAT_TO_DO, DomainError

logger = logging.getLogger("darkroom.locks")

MAX_NAME_LENGTH = 200
_LOCK_NOT_AVAILABLE = "55P03"
_POLL_SECONDS = 0.05

# The epoch bump: insert-or-increment, committed on its own before the holder starts work.
BUMP_EPOCH_SQL = """
    INSERT INTO core_lease AS lease (name, epoch, holder, acquired_at, expires_at, released_at)
    VALUES (%s, 1, %s, %s, %s, NULL)
    ON CONFLICT (name) DO UPDATE
       SET epoch = lease.epoch + 1,
           holder = EXCLUDED.holder,
           acquired_at = EXCLUDED.acquired_at,
           expires_at = EXCLUDED.expires_at,
           released_at = NULL
    RETURNING epoch
"""
# The fence: FOR SHARE conflicts with the bump's row lock (see the module docstring).
CHECK_EPOCH_SQL = """
    SELECT 1 FROM core_lease WHERE name = %s AND epoch = %s AND released_at IS NULL FOR SHARE
"""
_EXTEND_SQL = "UPDATE core_lease SET expires_at = %s WHERE name = %s AND epoch = %s AND released_at IS NULL"
_RELEASE_SQL = "UPDATE core_lease SET released_at = %s WHERE name = %s AND epoch = %s AND released_at IS NULL"


class LeaseError(DomainError):
    """Base of the lock errors; a 409 problem if one reaches an API view."""

    status_code = 409
    slug = "lease-conflict"
    title = "Work is in progress elsewhere"
    when_it_happens = (
        "Darkroom's background work (sending e-mails, paying photographers, matching photos, deciding "
        "stock) found the same piece of work in hand elsewhere, and stood back."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


class LockBusy(LeaseError):
    """Another worker holds the lock (or its open transaction outlived our wait)."""

    slug = "lock-busy"
    title = "Another worker holds this lock"
    when_it_happens = (
        "One of Darkroom's background processes is doing this piece of work at the moment, so another "
        "one that came to it stood back."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


class LockLost(LeaseError):
    """`extend()` found the Redis key gone or owned by another token: stop working."""

    slug = "lock-lost"
    title = "The lock was lost"
    when_it_happens = (
        "One of Darkroom's background processes took longer than its claim on a piece of work lasts, and "
        "stopped, leaving the work to another. What it had finished stays done."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


class StaleLeaseError(LeaseError):
    """A newer holder took over (or the lease was released): the protected write must not commit."""

    slug = "stale-lease"
    title = "The lease was taken over"
    when_it_happens = (
        "One of Darkroom's background processes found that another had taken its piece of work over, and "
        "stopped before writing anything more."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


def redis_key(name: str) -> str:
    """The Redis key of lock `name`, namespaced like the cache (per test run, per deployment)."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or ""
    return f"{prefix}:lock:{name}" if prefix else f"lock:{name}"


def default_holder() -> str:
    """host:pid:thread, what the admin shows as the holder when the caller names none."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"[:MAX_NAME_LENGTH]


class FencedLease:
    """A held lock: its name, the fencing `epoch`, and the operations of the holder.

    Not thread-safe; obtain it through `fenced_lock` / `try_fenced_lock`, which release it.
    """

    def __init__(self, *, name: str, epoch: int, holder: str, ttl: float, lock: Any) -> None:
        self.name = name
        self.epoch = epoch
        self.holder = holder
        self.ttl = ttl
        self._lock = lock
        self._released = False

    def __repr__(self) -> str:
        return f"<FencedLease {self.name}@{self.epoch} holder={self.holder!r}>"

    def check(self) -> None:
        """Fence the enclosing transaction: refuse to go on unless this epoch is still current.

        Must run inside the protected write's atomic block (or an enclosing one), on the
        "default" connection. Takes a FOR SHARE row lock on the lease that lasts until that
        transaction ends, which makes a concurrent acquisition wait for it.
        Raises TransactionManagementError outside an atomic block, StaleLeaseError when a newer
        holder took over or the lease was released.
        """
        if not connection.in_atomic_block:
            raise TransactionManagementError("lease.check() must run inside the protected write's transaction")
        with connection.cursor() as cursor:
            cursor.execute(CHECK_EPOCH_SQL, [self.name, self.epoch])
            current = cursor.fetchone()
        if current is None:
            raise StaleLeaseError(f"lease {self.name!r} epoch {self.epoch} is no longer current")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """`transaction.atomic()` (joins an outer transaction) whose first statement is `check()`.

        Raises StaleLeaseError before the body runs if a newer holder took over.
        """
        with transaction.atomic():
            self.check()
            yield

    def extend(self, ttl: float | None = None) -> None:
        """Reset the lock's TTL to `ttl` seconds from now (default: the TTL it was taken with).

        Call it between units of work. Updates the lease row's `expires_at` too (in the caller's
        transaction if there is one, else on its own).
        Raises LockLost if Redis no longer holds our token (expired, forgotten or taken over);
        StaleLeaseError if the lease row has a newer epoch or was released.
        """
        seconds = self.ttl if ttl is None else _positive(ttl, "ttl")
        try:
            self._lock.extend(seconds, replace_ttl=True)
        except LockNotOwnedError as exc:
            raise LockLost(f"lock {self.name!r} epoch {self.epoch} is no longer held in Redis") from exc
        with connection.cursor() as cursor:
            cursor.execute(_EXTEND_SQL, [timezone.now() + timedelta(seconds=seconds), self.name, self.epoch])
            updated = cursor.rowcount
        if updated == 0:
            raise StaleLeaseError(f"lease {self.name!r} epoch {self.epoch} is no longer current")

    def owned(self) -> bool:
        """Whether Redis still holds our token. Advisory only: `check()` is the arbiter."""
        return bool(self._lock.owned())

    def release(self) -> None:
        """Mark the lease row released (if still ours) and compare-and-delete the Redis key.

        Never raises: it runs in `finally` blocks and must not hide the real error. A key that
        is no longer ours (TTL expired, taken over) is left alone and logged; a Redis or database
        failure is logged, and the TTL clears the key. Idempotent.
        """
        if self._released:
            return
        self._released = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(_RELEASE_SQL, [timezone.now(), self.name, self.epoch])
        except DatabaseError:
            logger.exception("lease release: could not mark %s epoch %s released", self.name, self.epoch)
        _release_redis(self._lock, self.name, self.epoch)


@contextmanager
def fenced_lock(
    name: str, *, ttl: float, blocking_timeout: float = 0.0, holder: str | None = None
) -> Iterator[FencedLease]:
    """Hold lock `name` for the block; yields the lease. Released on exit, errors or not.

    `ttl`: seconds the Redis key lives without `extend()`. `blocking_timeout`: seconds to wait
    for a busy lock (0: one try). `holder`: label for the admin (default host:pid:thread).
    Must be entered outside any transaction (RuntimeError otherwise).
    Raises LockBusy if the lock stays held for `blocking_timeout`.
    """
    lease = _acquire(name, ttl=ttl, blocking_timeout=blocking_timeout, holder=holder)
    if lease is None:
        raise LockBusy(f"lock {name!r} is held by another worker")
    try:
        yield lease
    finally:
        lease.release()


@contextmanager
def try_fenced_lock(
    name: str, *, ttl: float, blocking_timeout: float = 0.0, holder: str | None = None
) -> Iterator[FencedLease | None]:
    """Like `fenced_lock`, but yields None instead of raising LockBusy when the lock is held."""
    lease = _acquire(name, ttl=ttl, blocking_timeout=blocking_timeout, holder=holder)
    try:
        yield lease
    finally:
        if lease is not None:
            lease.release()


def _acquire(name: str, *, ttl: float, blocking_timeout: float, holder: str | None) -> FencedLease | None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"lock name must be 1..{MAX_NAME_LENGTH} characters")
    ttl = _positive(ttl, "ttl")
    if blocking_timeout < 0:
        raise ValueError("blocking_timeout must be >= 0")
    holder = (holder or default_holder())[:MAX_NAME_LENGTH]
    # thread_local=False: the token belongs to this lease object, not to the calling thread.
    lock = get_redis_connection("default").lock(
        redis_key(name),
        timeout=ttl,
        sleep=_POLL_SECONDS,
        blocking=blocking_timeout > 0,
        blocking_timeout=blocking_timeout or None,
        thread_local=False,
    )
    if not lock.acquire(token=secrets.token_hex(16)):
        return None
    try:
        epoch = _bump_epoch(name, holder=holder, ttl=ttl)
    except OperationalError as exc:
        _release_redis(lock, name, None)
        if getattr(exc.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise LockBusy(f"lock {name!r}: the previous holder's transaction is still open") from exc
        raise
    except BaseException:
        _release_redis(lock, name, None)
        raise
    return FencedLease(name=name, epoch=epoch, holder=holder, ttl=ttl, lock=lock)


def _bump_epoch(name: str, *, holder: str, ttl: float) -> int:
    """Increment (or create at 1) the lease epoch and commit it. Durable: refuses to nest."""
    now = timezone.now()
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        # Wait for a previous holder's protected transaction (it holds FOR SHARE) at most ttl.
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{max(1, int(ttl * 1000))}ms"])
        cursor.execute(BUMP_EPOCH_SQL, [name, holder, now, now + timedelta(seconds=ttl)])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _release_redis(lock: Any, name: str, epoch: int | None) -> None:
    try:
        lock.release()
    except LockNotOwnedError:
        logger.warning("lock %s epoch %s was no longer ours at release (expired or taken over)", name, epoch)
    except RedisError:
        logger.exception("lock %s epoch %s: Redis release failed; the TTL will clear it", name, epoch)


def _positive(value: float, what: str) -> float:
    if not value > 0:
        raise ValueError(f"{what} must be > 0 seconds")
    return float(value)
