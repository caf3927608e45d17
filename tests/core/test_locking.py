"""The slot lock manager against a real Redis: exclusion, bounded wait, renewal, sorted
multi-key acquisition, and the database-only fallback when Redis is unreachable."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis
import redis_lock
from prometheus_client import REGISTRY

from petpro_booking.core.locking import (
    REDIS_DOWN_COOLDOWN_SECONDS,
    DistributedLockManager,
    LockBusy,
    lock_manager,
    send_with_release,
)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def acquire_elsewhere(manager: DistributedLockManager, *keys: str) -> BaseException | None:
    """Another thread's attempt at the keys (inside a block of this thread a key it holds is
    not taken again): None when it got them, else what it raised."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with manager.acquire(*keys):
                outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.fixture
def manager(private_redis):
    return DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.3)


def test_lock_manager_follows_redis_url(settings):
    settings.REDIS_URL = ""
    assert lock_manager().redis_url == ""
    assert lock_manager() is lock_manager()


@pytest.mark.parametrize("backend", ["redis", "in_process"])
def test_second_holder_waits_then_times_out_with_lock_busy(backend, private_redis):
    url = private_redis.url if backend == "redis" else ""
    manager = DistributedLockManager(redis_url=url, ttl_seconds=5, wait_seconds=0.3)
    timeouts_before = sample("petpro_lock_timeouts_total")
    with manager.acquire("slot:a"):
        started = time.monotonic()
        busy = acquire_elsewhere(manager, "slot:a")
        waited = time.monotonic() - started
    assert isinstance(busy, LockBusy)
    assert busy.code == "lock_busy"
    assert busy.status_code == 409
    assert waited > 0.25  # it did wait (the upper bound is the machine's load, not ours)
    assert sample("petpro_lock_timeouts_total") == timeouts_before + 1
    with manager.acquire("slot:a"):  # released on exit
        pass


@pytest.mark.parametrize("backend", ["redis", "in_process"])
def test_holders_take_turns(backend, private_redis):
    url = private_redis.url if backend == "redis" else ""
    manager = DistributedLockManager(redis_url=url, ttl_seconds=5, wait_seconds=5)
    inside = 0
    most_inside = 0
    guard = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        nonlocal inside, most_inside
        barrier.wait()
        for _ in range(5):
            with manager.acquire("slot:hot"):
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1


def test_keys_are_taken_in_sorted_order_so_crossing_pairs_never_deadlock(manager):
    manager.wait_seconds = 5
    failures: list[Exception] = []
    barrier = threading.Barrier(2)

    def worker(first: str, second: str) -> None:
        barrier.wait()
        try:
            for _ in range(30):
                with manager.acquire(first, second):
                    time.sleep(0.001)
        except Exception as exc:  # the test reports it below
            failures.append(exc)

    threads = [
        threading.Thread(target=worker, args=("slot:1", "slot:2")),
        threading.Thread(target=worker, args=("slot:2", "slot:1")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_lease_is_renewed_while_held(private_redis):
    # A 2 s TTL renewed every ~0.67 s leaves a busy machine 1.3 s of slack per renewal.
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=2, wait_seconds=0.2)
    with manager.acquire("slot:long"):
        time.sleep(2.6)  # past the 2 s TTL: only the renewal keeps it
        assert isinstance(acquire_elsewhere(manager, "slot:long"), LockBusy)


def test_lock_wait_is_recorded(manager):
    before = sample("petpro_lock_wait_seconds_count")
    with manager.acquire("slot:w"):
        pass
    assert sample("petpro_lock_wait_seconds_count") == before + 1


def test_unreachable_redis_runs_without_lock_and_counts_it(private_redis):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=1)
    labels = {"operation": "slot_lock"}
    before = sample("petpro_redis_unavailable_fallbacks_total", labels)
    private_redis.stop()
    ran = []
    with manager.acquire("slot:down"):
        ran.append(1)
    with manager.acquire("slot:down"):  # within the cool-down: no connect attempt at all
        ran.append(2)
    assert ran == [1, 2]
    assert sample("petpro_redis_unavailable_fallbacks_total", labels) == before + 2

    private_redis.start()
    time.sleep(REDIS_DOWN_COOLDOWN_SECONDS + 0.05)
    with manager.acquire("slot:down"):
        client = redis.Redis.from_url(private_redis.url)
        assert client.exists("lock:petpro:{slot:down}") == 1  # a real lease again
    assert sample("petpro_redis_unavailable_fallbacks_total", labels) == before + 2


def _renewer_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "petpro-lease-renewer")


def test_one_renewal_thread_per_manager_however_many_holds(private_redis):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.3)
    before = _renewer_threads()
    for index in range(50):
        with manager.acquire(f"slot:{index}", "slot:other"):
            assert manager._renewer.held() == 2
    assert manager._renewer.held() == 0  # every lease left the renewer on release
    assert _renewer_threads() == before + 1


def test_lost_lease_is_dropped_and_its_release_only_logged(private_redis, caplog):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.3)
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("slot:lost"):
        client.delete("lock:petpro:{slot:lost}")  # the lease ran out; now someone else holds it
        client.set("lock:petpro:{slot:lost}", "someone-else")
        manager._renewer.renew_all()
        assert manager._renewer.held() == 0
    assert client.get("lock:petpro:{slot:lost}") == b"someone-else"  # not extended, not deleted
    messages = [record.getMessage() for record in caplog.records]
    assert "Lease lock:petpro:{slot:lost} lost before its release" in messages
    assert "Lock slot:lost expired before its release (lease outlived)" in messages


def test_renewal_with_redis_gone_is_logged_and_the_lease_kept_for_the_next_round(
    private_redis, caplog
):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.3)
    with manager.acquire("slot:outage"):
        private_redis.stop()
        try:
            manager._renewer.renew_all()
            assert manager._renewer.held() == 1  # tried again next round, if Redis is back
        finally:
            private_redis.start()
    assert any("Could not renew lease" in record.getMessage() for record in caplog.records)


def test_a_release_with_redis_gone_reports_the_queued_commands_and_leaves_the_lease_to_expire(
    private_redis, caplog
):
    """Redis stops inside the block and is still down when it ends: the block ends without an
    exception, the commands queued with the release (search-generation bumps) are told they
    failed, so their caller counts the fallback, and the lease expires by its TTL."""
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=2, wait_seconds=0.3)
    told: list[BaseException | None] = []
    try:
        with manager.acquire("slot:gone"):
            assert send_with_release(private_redis.url, [("INCR", "gen:slots")], told.append)
            private_redis.stop()
    finally:
        private_redis.start()
    assert len(told) == 1
    assert isinstance(told[0], redis.RedisError)
    assert any(
        "Could not release lock slot:gone, it expires on its own" in record.getMessage()
        for record in caplog.records
    )
    assert manager._renewer.held() == 0  # no renewal keeps the lost lease alive
    # A fresh server: nothing of the old lease is left to wait for.
    with manager.acquire("slot:gone"):
        pass


def test_renewal_survives_a_failing_pass(private_redis, monkeypatch):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=1, wait_seconds=0.2)
    renewer = manager._renewer
    original, failures = renewer.renew_all, []

    def fails_once() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("an unexpected error in one pass")
        original()

    monkeypatch.setattr(renewer, "renew_all", fails_once)
    with manager.acquire("slot:survivor"):
        time.sleep(1.6)  # past the TTL: the passes after the failed one kept the lease
        assert isinstance(acquire_elsewhere(manager, "slot:survivor"), LockBusy)
    assert failures == [1]


def test_a_lease_whose_renewal_cannot_start_is_given_back(private_redis, monkeypatch):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.2)

    def no_thread(lock) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(manager._renewer, "add", no_thread)
    with pytest.raises(RuntimeError), manager.acquire("slot:no-thread"):
        pass
    assert redis.Redis.from_url(private_redis.url).exists("lock:petpro:{slot:no-thread}") == 0


def test_a_forked_child_starts_with_no_leases_and_its_own_renewer(private_redis):
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.2)
    with manager.acquire("slot:parent"):
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if everything holds
            ok = manager._renewer.held() == 0
            with manager.acquire("slot:child"):
                ok = ok and manager._renewer.held() == 1 and manager._renewer._thread.is_alive()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert manager._renewer.held() == 1  # the parent's lease is still the parent's
    assert os.waitstatus_to_exitcode(status) == 0


class RoundTrips:
    """Counts what the manager's client sends (a spy: the real connection still sends it)."""

    def __init__(self, monkeypatch) -> None:
        self.sent: list[bytes] = []
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.sent.append(b"".join(command) if isinstance(command, list) else command)
            return original(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


def test_nested_blocks_release_in_one_round_trip_with_the_queued_commands(
    manager, private_redis, monkeypatch
):
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("slot:warm"):  # a new Redis: the first release loads the script
        pass
    outcomes: list[BaseException | None] = []
    with manager.acquire("owner:{o1}"):
        with manager.acquire("slot:nested"):
            queued = send_with_release(manager.redis_url, [("SET", "gen:x", 7)], outcomes.append)
            assert queued
        assert client.exists("lock:petpro:{slot:nested}") == 1  # kept until the outer block ends
        trips = RoundTrips(monkeypatch)
    assert len(trips.sent) == 1, trips.sent
    assert trips.sent[0].count(b"EVALSHA") == 1  # one command: the SET and both releases
    assert client.exists("lock:petpro:{slot:nested}", "lock:petpro:owner:{o1}") == 0
    assert client.get("gen:x") == b"7"
    assert outcomes == [None]
    with manager.acquire("slot:nested"):  # both free again
        pass


def test_a_new_acquire_inside_sends_what_is_queued_first(manager, private_redis):
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("owner:{o2}"):
        with manager.acquire("slot:first"):
            pass
        with manager.acquire("slot:second"):
            assert client.exists("lock:petpro:{slot:first}") == 0
        assert client.exists("lock:petpro:{slot:second}") == 1
    assert client.exists("lock:petpro:{slot:second}", "lock:petpro:owner:{o2}") == 0


def test_commands_are_queued_only_inside_a_block_on_the_same_redis(manager, private_redis):
    assert not send_with_release(manager.redis_url, [("SET", "gen:y", 1)], print)
    with manager.acquire("slot:other"):
        assert not send_with_release("redis://elsewhere:6379/0", [("SET", "gen:y", 1)], print)
    assert redis.Redis.from_url(private_redis.url).exists("gen:y") == 0


def test_a_failing_queued_command_is_reported_and_the_leases_still_released(manager, private_redis):
    client = redis.Redis.from_url(private_redis.url)
    client.set("gen:not-a-number", "abc")
    outcomes: list[BaseException | None] = []
    with manager.acquire("slot:failing"):
        send_with_release(manager.redis_url, [("INCR", "gen:not-a-number")], outcomes.append)
    assert isinstance(outcomes[0], redis.ResponseError)
    assert client.exists("lock:petpro:{slot:failing}") == 0


def test_a_release_after_redis_lost_its_scripts_still_happens(manager, private_redis):
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("slot:flushed"):
        client.script_flush()  # a restarted or failed-over Redis: the unlock script is gone
    assert client.exists("lock:petpro:{slot:flushed}") == 0


def test_a_release_wakes_a_python_redis_lock_waiter_at_once(manager, private_redis):
    """The release script signals waiters as python-redis-lock's own release does: the
    library's blocking acquire of the same key (BLPOP on its signal list) returns right after
    the block ends, not when the 5 s lease or its own 10 s wait would have run out."""
    client = redis.Redis.from_url(private_redis.url)
    waited: list[object] = []

    def wait() -> None:
        started = time.monotonic()
        waiter = redis_lock.Lock(client, "petpro:{slot:waited}", expire=30)
        waited.extend([waiter.acquire(blocking=True, timeout=10), time.monotonic() - started])

    with manager.acquire("slot:waited", "owner:{o5}"):
        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)  # the waiter is blocked on the signal list by now
    thread.join(12)
    assert waited[0] is True
    assert waited[1] < 2.0, waited


def test_a_key_an_enclosing_block_holds_is_not_taken_again(manager, private_redis):
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("owner:{o3}", "slot:again"):
        started = time.monotonic()
        with manager.acquire("slot:again"):  # the slot write inside the owner's block
            assert time.monotonic() - started < manager.wait_seconds  # no wait for itself
        assert client.exists("lock:petpro:{slot:again}") == 1  # still the outer block's
        assert isinstance(acquire_elsewhere(manager, "slot:again"), LockBusy)
    assert client.exists("lock:petpro:{slot:again}", "lock:petpro:owner:{o3}") == 0
    assert acquire_elsewhere(manager, "slot:again") is None


def test_free_keys_are_taken_together_in_one_round_trip(manager, private_redis, monkeypatch):
    client = redis.Redis.from_url(private_redis.url)
    with manager.acquire("slot:warm-2"):  # a new Redis: the release script is loaded
        pass
    trips = RoundTrips(monkeypatch)
    with manager.acquire("slot:together-b", "owner:{o4}", "slot:together-a"):
        taking = list(trips.sent)
        assert (
            client.exists(
                "lock:petpro:owner:{o4}",
                "lock:petpro:{slot:together-a}",
                "lock:petpro:{slot:together-b}",
            )
            == 3
        )
    assert len(taking) == 1, taking
    assert taking[0].count(b"SET") == 3
    releases = [sent for sent in trips.sent[len(taking) :] if b"EVALSHA" in sent]
    assert len(releases) == 1  # and one more round trip, one command, for the three releases
    assert releases[0].count(b"EVALSHA") == 1
    assert releases[0].count(b"lock-signal:") == 3
    assert (
        client.exists(
            "lock:petpro:owner:{o4}",
            "lock:petpro:{slot:together-a}",
            "lock:petpro:{slot:together-b}",
        )
        == 0
    )
    # released as python-redis-lock releases: a waiter blocked on the signal list is woken
    assert client.lrange("lock-signal:petpro:{slot:together-a}", 0, -1) == [b"1"]
    assert 0 < client.pttl("lock-signal:petpro:{slot:together-a}") <= 1000


def test_a_taken_key_keeps_the_keys_before_it_and_gives_back_those_after(manager, private_redis):
    """Only a prefix of the sorted keys is held while waiting (no circular wait): with b taken
    by someone else, a is kept and c given back until b is free."""
    client = redis.Redis.from_url(private_redis.url)
    manager.wait_seconds = 3
    seen: dict[str, int] = {}
    got: list[bool] = []
    other = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=1)
    with other.acquire("slot:prefix-b"):
        thread = threading.Thread(
            target=lambda: got.append(
                acquire_elsewhere(manager, "slot:prefix-c", "slot:prefix-a", "slot:prefix-b")
                is None
            )
        )
        thread.start()
        time.sleep(0.3)  # the contender waits for b meanwhile
        seen["a"] = client.exists("lock:petpro:{slot:prefix-a}")
        seen["c"] = client.exists("lock:petpro:{slot:prefix-c}")
    thread.join()
    assert seen == {"a": 1, "c": 0}
    assert got == [True]  # b freed: it took b, then c
    assert client.exists("lock:petpro:{slot:prefix-a}", "lock:petpro:{slot:prefix-c}") == 0
