"""Fenced locks: the Redis lock excludes, the database epoch decides who may still write.

Real Redis (only this test's own keys are touched) and real Postgres connections; concurrency
is injected at exact points with threads, events and `pg_blocking_pids`.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django_redis import get_redis_connection

from apps.core.locks import (
    FencedLease,
    LockBusy,
    LockLost,
    StaleLeaseError,
    fenced_lock,
    redis_key,
    try_fenced_lock,
)
from apps.core.models import Lease

pytestmark = pytest.mark.django_db(transaction=True)

SKU = "sku-42"


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def make_lock_name() -> Iterator[Callable[[], str]]:
    """Unique lock names; their Redis keys (and only those) are deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"test-locks:{uuid.uuid4().hex}")
        return names[-1]

    yield make
    if names:
        get_redis_connection("default").delete(*(redis_key(n) for n in names))


@pytest.fixture
def lock_name(make_lock_name: Callable[[], str]) -> str:
    return make_lock_name()


@pytest.fixture
def stock() -> Iterator[None]:
    """A protected table (like per-SKU stock) the runtime role writes: one row, quantity 10."""
    runtime = settings.DATABASES["default"]["USER"]
    with connections["owner"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE locks_test_stock (sku text PRIMARY KEY, quantity integer NOT NULL, written_by text NOT NULL)"
        )
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE ON locks_test_stock TO "{runtime}"')
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO locks_test_stock VALUES (%s, 10, 'nobody')", [SKU])
    yield
    connection.close()
    with connections["owner"].cursor() as cursor:
        cursor.execute("DROP TABLE locks_test_stock")


@pytest.fixture
def hold() -> Iterator[Callable[[str, str], FencedLease]]:
    """Take a lease that stays held across the test's steps and is released at teardown."""
    with ExitStack() as stack:

        def take(name: str, holder: str) -> FencedLease:
            return stack.enter_context(fenced_lock(name, ttl=30, holder=holder))

        yield take


@pytest.fixture
def observer(runtime_conn: psycopg.Connection) -> psycopg.Connection:
    """An autocommit runtime connection to watch who waits for whom."""
    runtime_conn.autocommit = True
    return runtime_conn


def take_one(by: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE locks_test_stock SET quantity = quantity - 1, written_by = %s WHERE sku = %s", [by, SKU])


def read_stock() -> tuple[int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT quantity, written_by FROM locks_test_stock WHERE sku = %s", [SKU])
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll `predicate` until it holds (a bound for a loaded machine; it returns at once when green)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.01)


def blocked_by(observer: psycopg.Connection, waiter: int, holder: int) -> Callable[[], bool]:
    def check() -> bool:
        row = observer.execute("SELECT %s = ANY(pg_blocking_pids(%s))", [holder, waiter]).fetchone()
        return bool(row and row[0])

    return check


def forget_in_redis(name: str) -> None:
    """What a TTL expiry or a Redis restart does to one holder's key (never a FLUSH: Redis is shared)."""
    assert get_redis_connection("default").delete(redis_key(name)) == 1


def run_thread(target: Callable[[], Any]) -> threading.Thread:
    def body() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


# --- acquisition and release ----------------------------------------------------------------


def test_each_acquisition_increments_the_epoch_and_release_marks_the_row(lock_name: str) -> None:
    # given: a lock never taken before
    epochs = []
    # when: it is taken and released three times
    for holder in ("w1", "w2", "w3"):
        with fenced_lock(lock_name, ttl=30, holder=holder) as lease:
            epochs.append(lease.epoch)
            held = Lease.objects.get(name=lease.name)
            assert (held.epoch, held.holder, held.released_at, held.state) == (lease.epoch, holder, None, "held")
    # then: the epochs are 1, 2, 3, the row says released, and the Redis key is gone
    assert epochs == [1, 2, 3]
    row = Lease.objects.get(name=lock_name)
    assert (row.epoch, row.holder, row.state) == (3, "w3", "released")
    assert get_redis_connection("default").exists(redis_key(lock_name)) == 0
    # and: a released lease no longer fences anything
    with pytest.raises(StaleLeaseError), transaction.atomic():
        lease.check()


def test_a_held_lock_is_refused_to_others_without_bumping_the_epoch(lock_name: str) -> None:
    # given: worker 1 holds the lock
    with fenced_lock(lock_name, ttl=30, holder="w1") as first:
        # when: others try to take it, once and with a short wait
        with pytest.raises(LockBusy):
            with fenced_lock(lock_name, ttl=30, holder="w2"):
                pass
        with try_fenced_lock(lock_name, ttl=30, blocking_timeout=0.2, holder="w3") as other:
            # then: they are refused, and the holder's epoch stays current
            assert other is None
        assert Lease.objects.get(name=lock_name).epoch == first.epoch == 1
        assert first.owned()
    # and: once released, the next taker gets the next epoch
    with try_fenced_lock(lock_name, ttl=30) as nxt:
        assert nxt is not None and nxt.epoch == 2


def test_only_one_of_many_concurrent_acquirers_wins(lock_name: str) -> None:
    # given: eight workers that try at the same moment and hold on until all have tried
    workers = 8
    start, tried = threading.Barrier(workers), threading.Barrier(workers)
    results: queue.Queue[int | None] = queue.Queue()

    def worker() -> None:
        start.wait()
        with try_fenced_lock(lock_name, ttl=30) as lease:
            results.put(None if lease is None else lease.epoch)
            tried.wait()

    # when: they race
    threads = [run_thread(worker) for _ in range(workers)]
    for thread in threads:
        thread.join(120)
    # then: exactly one got the lock, at epoch 1
    got = [results.get_nowait() for _ in range(workers)]
    assert sorted(got, key=lambda e: e is not None) == [None] * (workers - 1) + [1]
    assert Lease.objects.get(name=lock_name).epoch == 1


def test_release_after_ttl_expiry_leaves_the_new_holders_lock_intact(
    lock_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = get_redis_connection("default")
    with ExitStack() as holder_b:
        with fenced_lock(lock_name, ttl=30, holder="A"):
            # given: A's key really expires (TTL shortened to 1 ms) and B takes the lock
            client.pexpire(redis_key(lock_name), 1)
            wait_until(lambda: client.exists(redis_key(lock_name)) == 0, "A's key to expire")
            lease_b = holder_b.enter_context(fenced_lock(lock_name, ttl=30, holder="B"))
            token_b = client.get(redis_key(lock_name))
            # when: A's block ends and A releases
        # then: B's key is still there with B's token, and the row is still B's and unreleased
        assert client.get(redis_key(lock_name)) == token_b
        assert lease_b.owned()
        row = Lease.objects.get(name=lock_name)
        assert (row.epoch, row.holder, row.released_at) == (2, "B", None)
        assert any("no longer ours" in r.getMessage() for r in caplog.records if r.name == "darkroom.locks")
    # and: B's own release deletes it
    assert client.exists(redis_key(lock_name)) == 0


def test_acquiring_inside_a_transaction_is_refused_and_leaves_no_key(lock_name: str) -> None:
    # given: an open transaction
    with transaction.atomic():
        # when: a lock is taken inside it
        with pytest.raises(RuntimeError, match="durable"):
            with fenced_lock(lock_name, ttl=30):
                pass
    # then: the Redis key was given back and no epoch was handed out
    assert get_redis_connection("default").exists(redis_key(lock_name)) == 0
    assert not Lease.objects.filter(name=lock_name).exists()


def test_check_refuses_to_run_outside_a_transaction(lock_name: str) -> None:
    with fenced_lock(lock_name, ttl=30) as lease:
        with pytest.raises(TransactionManagementError):
            lease.check()


# --- extend ---------------------------------------------------------------------------------


def test_extend_keeps_the_lock_alive_past_its_original_ttl(make_lock_name: Callable[[], str]) -> None:
    # given: two locks taken with a 3 s TTL (time enough to extend the first before it runs
    # out, even on a loaded machine); only the first is extended to 60 s
    extended_name, plain_name = make_lock_name(), make_lock_name()
    client = get_redis_connection("default")
    with fenced_lock(extended_name, ttl=3) as extended, fenced_lock(plain_name, ttl=3):
        acquired_expiry = Lease.objects.get(name=extended_name).expires_at
        extended.extend(60)
        # when: the original TTL has passed: the plain lock, taken after the extended one with
        # the same TTL, has expired in Redis
        wait_until(lambda: client.exists(redis_key(plain_name)) == 0, "the plain lock's key to expire")
        # then: the extended lock is still held and refused to others, the plain one is not
        assert extended.owned()
        with try_fenced_lock(extended_name, ttl=30) as other:
            assert other is None
        with try_fenced_lock(plain_name, ttl=30) as other:
            assert other is not None and other.epoch == 2
        # and: the lease row records the later expiry
        assert Lease.objects.get(name=extended_name).expires_at > acquired_expiry
        with extended.atomic():
            pass


def test_extend_after_losing_the_key_raises_lock_lost(lock_name: str) -> None:
    with fenced_lock(lock_name, ttl=30) as lease:
        forget_in_redis(lock_name)
        with pytest.raises(LockLost):
            lease.extend()


# --- fencing --------------------------------------------------------------------------------


@pytest.mark.usefixtures("stock")
def test_stale_holder_is_refused_by_its_epoch_after_redis_forgets_it(lock_name: str) -> None:
    with ExitStack() as stack:
        # given: A holds epoch n; Redis forgets A's key; B takes over at n + 1 and writes
        lease_a = stack.enter_context(fenced_lock(lock_name, ttl=30, holder="A"))
        forget_in_redis(lock_name)
        lease_b = stack.enter_context(fenced_lock(lock_name, ttl=30, holder="B"))
        assert lease_b.epoch == lease_a.epoch + 1
        with lease_b.atomic():
            take_one("B")
        # when: A (which does not know) writes, with the check after the write ...
        with pytest.raises(StaleLeaseError), transaction.atomic():
            take_one("A")
            lease_a.check()
        # ... or through lease.atomic(), which checks before the body
        body_ran = False
        with pytest.raises(StaleLeaseError), lease_a.atomic():
            body_ran = True
            take_one("A")
        # then: nothing of A's was written; B's write stands; A cannot extend either
        assert not body_ran
        assert read_stock() == (9, "B")
        with pytest.raises(LockLost):
            lease_a.extend()
        # and: B still writes fine
        with lease_b.atomic():
            take_one("B")
        assert read_stock() == (8, "B")


@pytest.mark.usefixtures("stock")
def test_paused_holder_that_checked_first_makes_the_new_holder_wait(
    lock_name: str, observer: psycopg.Connection, hold: Callable[[str, str], FencedLease]
) -> None:
    # given: A holds epoch n and is inside its protected transaction, checked and written,
    # paused just before COMMIT while its Redis key expires
    lease_a = hold(lock_name, "A")
    forget_in_redis(lock_name)
    b_pid: queue.Queue[int] = queue.Queue()
    b_result: dict[str, Any] = {}

    def holder_b() -> None:
        b_pid.put(backend_pid())
        with fenced_lock(lock_name, ttl=30, holder="B") as lease_b:
            with lease_b.atomic():
                b_result["saw"] = read_stock()
                take_one("B")
            b_result["epoch"] = lease_b.epoch

    with transaction.atomic():
        lease_a.check()
        take_one("A")
        # when: B acquires meanwhile
        thread = run_thread(holder_b)
        # then: B's epoch bump waits on A's row lock
        wait_until(blocked_by(observer, b_pid.get(timeout=60), backend_pid()), "B's bump to wait for A")
        assert "epoch" not in b_result
    # and: A commits as the current holder; only then does B get n + 1, and B sees A's write
    thread.join(60)
    assert b_result == {"saw": (9, "A"), "epoch": lease_a.epoch + 1}
    assert read_stock() == (8, "B")
    # and: A's next protected write is refused
    with pytest.raises(StaleLeaseError), lease_a.atomic():
        take_one("A")
    assert read_stock() == (8, "B")


@pytest.mark.usefixtures("stock")
def test_paused_holder_checking_during_an_inflight_bump_is_refused_when_it_commits(
    lock_name: str, observer: psycopg.Connection, hold: Callable[[str, str], FencedLease]
) -> None:
    # given: A holds epoch n; its key expired; B's acquisition has run its epoch bump but is
    # paused just before committing it (injected at the exact statement)
    lease_a = hold(lock_name, "A")
    forget_in_redis(lock_name)
    bumped, go = threading.Event(), threading.Event()
    pids: dict[str, int] = {}
    outcome: dict[str, Any] = {}

    def pause_after_bump(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if "INSERT INTO core_lease" in sql:
            bumped.set()
            assert go.wait(120)
        return result

    def holder_b() -> None:
        pids["B"] = backend_pid()
        with connection.execute_wrapper(pause_after_bump), fenced_lock(lock_name, ttl=30, holder="B") as lease_b:
            outcome["b_epoch"] = lease_b.epoch
            with lease_b.atomic():
                take_one("B")

    def holder_a() -> None:
        pids["A"] = backend_pid()
        try:
            with transaction.atomic():
                take_one("A")
                outcome["a_checking"] = True
                lease_a.check()
            outcome["a"] = "committed"
        except StaleLeaseError:
            outcome["a"] = "stale"

    thread_b = run_thread(holder_b)
    assert bumped.wait(60)
    # when: A writes and checks while B's bump is uncommitted
    thread_a = run_thread(holder_a)
    wait_until(lambda: "a_checking" in outcome, "A to reach its check")
    wait_until(blocked_by(observer, pids["A"], pids["B"]), "A's check to wait for B's bump")
    # and: B's bump commits
    go.set()
    thread_a.join(60)
    thread_b.join(60)
    # then: A's check saw the new epoch and A's write rolled back; only B's write exists
    assert outcome == {"a_checking": True, "a": "stale", "b_epoch": lease_a.epoch + 1}
    assert read_stock() == (9, "B")


@pytest.mark.usefixtures("stock")
def test_new_acquirer_gives_up_when_the_old_holders_transaction_outlives_its_ttl(
    lock_name: str, observer: psycopg.Connection, hold: Callable[[str, str], FencedLease]
) -> None:
    # given: A is inside its checked transaction and its key is gone
    lease_a = hold(lock_name, "A")
    forget_in_redis(lock_name)
    outcome: dict[str, Any] = {}

    def holder_b() -> None:
        try:
            with fenced_lock(lock_name, ttl=0.3, holder="B"):
                outcome["b"] = "acquired"
        except LockBusy:
            outcome["b"] = "busy"

    with transaction.atomic():
        lease_a.check()
        take_one("A")
        # when: B tries to acquire with a TTL shorter than A's transaction
        thread = run_thread(holder_b)
        thread.join(60)
        # then: B gave up with LockBusy and gave its Redis key back
        assert outcome == {"b": "busy"}
        assert get_redis_connection("default").exists(redis_key(lock_name)) == 0
    # and: A's write committed under its still-current epoch
    assert read_stock() == (9, "A")
    assert Lease.objects.get(name=lock_name).epoch == lease_a.epoch


# --- database rules -------------------------------------------------------------------------


def test_lease_rows_cannot_be_deleted_nor_their_epoch_lowered(lock_name: str) -> None:
    # given: a lease at epoch 2
    for _ in range(2):
        with fenced_lock(lock_name, ttl=30):
            pass
    # when/then: the runtime role cannot delete it, lower its epoch or set it below 1
    with pytest.raises(DatabaseError, match="Cannot delete"), transaction.atomic():
        Lease.objects.filter(name=lock_name).delete()
    with pytest.raises(DatabaseError, match="Cannot update"), transaction.atomic():
        Lease.objects.filter(name=lock_name).update(epoch=1)
    with pytest.raises(IntegrityError, match="lease_epoch_positive"), transaction.atomic():
        now = timezone.now()
        Lease.objects.create(name=f"{lock_name}:x", epoch=0, holder="x", acquired_at=now, expires_at=now)
    assert Lease.objects.get(name=lock_name).epoch == 2
