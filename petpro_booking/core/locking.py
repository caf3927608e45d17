"""Slot locks (the first layer against double booking, docs/architecture.md): Redis leases that
line contenders up, never trusted alone.

`with lock_manager().acquire(*keys):` takes every key in sorted order with a bounded wait (the
`slot_lock` retry policy: exponential backoff with full jitter) and releases them all. The lock
only keeps the database from seeing a crowd; correctness comes from the SERIALIZABLE
transaction, the conditional counter UPDATEs, the fenced status changes and the CHECK
constraints. Hence:

* on timeout it raises `LockBusy` (409, retryable; the slot-write gateway `slots/locking.py`
  names it `slot_busy`);
* when Redis is unreachable the block runs without a lock (database guard alone) and
  `petpro_redis_unavailable_fallbacks_total{operation="slot_lock"}` counts it;
* a holder paused past its lease loses the lock to the next contender; its later writes fail
  on their fences, and its release is only logged.

Leases are renewed by one thread per manager (`LeaseRenewer`), not by python-redis-lock's
thread per lock: on the hold path, starting and joining that thread cost more CPU than the
lock's two round trips.

Round trips: a free lock costs one SET NX (no retry machinery unless it is taken), and the free
keys of one block are taken together, one pipelined round trip for all of them (a key found
taken keeps the keys before it in order, gives back those after it and waits its turn: only a
prefix of the sorted keys is ever held while waiting). A key an enclosing block of this task
already holds is not taken again (the owner's lock taken with the slot's, then the slot write
inside it). A block
inside another `acquire` of the same manager (the owner's lock around a slot write) hands its
releases to the outermost block, which sends them, with any commands queued by
`send_with_release` (the after-commit cache generation bumps), in one round trip and one
command (a Lua script) when it ends; a new `acquire` inside the outer block sends what is
queued first, so no lease is kept while waiting for another. The outer block's work after an
inner block should be short: the inner leases are kept until it ends.

With `REDIS_URL` unset (embedded mode) the locks are in-process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar

import redis
import redis_lock
from django.conf import settings
from redis.commands.core import Script
from tenacity import retry_if_result

from . import metrics
from .errors import Contention
from .redis_client import hash_tagged, is_cluster_url, redis_from_url
from .retrying import retry_policy

logger = logging.getLogger(__name__)
# python-redis-lock logs a warning for every non-blocking attempt that finds the lock taken;
# our polling misses on purpose, so only its errors are worth a line.
logging.getLogger("redis_lock.acquire").setLevel(logging.ERROR)

# After Redis failed, skip it for this long instead of paying a connect attempt per request.
REDIS_DOWN_COOLDOWN_SECONDS = 1.0


class LockBusy(Contention):
    """A lock was not free within the wait (LOCK_WAIT_SECONDS)."""

    code = "lock_busy"


class _InProcessLocks:
    """Named locks of one process (embedded mode); holds no entry for a free name."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._changed = threading.Condition()

    def try_acquire(self, key: str, timeout: float) -> bool:
        with self._changed:
            free = self._changed.wait_for(lambda: key not in self._held, timeout=timeout)
            if free:
                self._held.add(key)
            return free

    def release(self, key: str) -> None:
        with self._changed:
            self._held.discard(key)
            self._changed.notify_all()


class LeaseRenewer:
    """Extends every lease its manager holds to a full TTL about every third of the TTL, from
    one daemon thread (started on first use; started again if it ever died, and in a forked
    child, which starts with no leases: the parent's are the parent's).

    A live holder keeps its lease unless renewals fail for about two thirds of the TTL in a row
    (Redis unreachable: then the database guard alone holds, as it always can); a frozen process
    freezes this thread too, and its leases run out as they must. A lease found lost (EXTEND
    refused: it expired, someone else holds it now) is dropped and logged; the holder's fenced
    writes and its release deal with the rest.
    """

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.interval = ttl_seconds / 3
        self._reset()
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call_if_alive(reference, "_reset"))

    def _reset(self) -> None:
        self._held: dict[int, redis_lock.Lock] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, lock: redis_lock.Lock) -> None:
        with self._guard:
            self._held[id(lock)] = lock
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(
                    target=self._run, name="petpro-lease-renewer", daemon=True
                )
                thread.start()
                self._thread = thread

    def discard(self, lock: redis_lock.Lock) -> None:
        with self._guard:
            self._held.pop(id(lock), None)

    def held(self) -> int:
        with self._guard:
            return len(self._held)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.renew_all()
            except Exception:  # never let one bad pass end renewal for the whole process
                logger.exception("Lease renewal pass failed; trying again next pass")

    def renew_all(self) -> None:
        with self._guard:
            leases = list(self._held.values())
        for lock in leases:
            try:
                lock.extend(expire=self.ttl_seconds)
            except redis_lock.NotAcquired:
                with self._guard:
                    still_held = self._held.pop(id(lock), None) is not None
                if still_held:  # not a release that crossed this renewal
                    logger.warning("Lease %s lost before its release", lock._name)
            except redis.RedisError as exc:
                # Redis away: the lease may run out; the database guard still holds.
                logger.warning("Could not renew lease %s: %s", lock._name, exc)


Sent = Callable[[BaseException | None], None]


class _ReleaseBatch:
    """What the outermost `acquire` block of a thread (or task) sends when it ends: the leases
    of every block inside it, and commands queued with `send_with_release`."""

    def __init__(self, manager: DistributedLockManager) -> None:
        self.manager = manager
        self.leases: list[tuple[redis_lock.Lock, str]] = []
        self.commands: list[tuple[list[tuple], Sent]] = []

    def send(self) -> None:
        leases, self.leases = self.leases, []
        commands, self.commands = self.commands, []
        if leases or commands:
            self.manager._send(leases, commands)


_batch: ContextVar[_ReleaseBatch | None] = ContextVar("petpro_lock_release_batch", default=None)
# (manager, key) of every lock the enclosing blocks of this thread (or task) hold.
_held: ContextVar[frozenset[tuple[int, str]]] = ContextVar("petpro_locks_held", default=frozenset())


def send_with_release(redis_url: str, commands: list[tuple], sent: Sent) -> bool:
    """Queue `commands` (each `(name, *args)`, run in order, answers ignored) to go to Redis
    with the releases of the enclosing lock block, in its one round trip. True when queued;
    False when there is no such block on `redis_url` (a node, not a cluster): send them
    yourself. `sent(error)` is called once they went, with None or the first failure (a
    command's, or the connection's: the leases then expire on their own)."""
    batch = _batch.get()
    if batch is None or batch.manager.redis_url != redis_url:
        return False
    batch.commands.append((commands, sent))
    return True


def _call_if_alive(reference: weakref.ref, method: str) -> None:
    target = reference()
    if target is not None:
        getattr(target, method)()


class DistributedLockManager:
    """Acquires named leases on Redis (python-redis-lock) or, without Redis, in process."""

    def __init__(
        self,
        *,
        redis_url: str = "",
        ttl_seconds: int = 30,
        wait_seconds: float = 5.0,
        auto_renewal: bool = True,
        namespace: str = "petpro",
    ) -> None:
        self.redis_url = redis_url
        self.ttl_seconds = max(1, int(ttl_seconds))
        self.wait_seconds = wait_seconds
        self.auto_renewal = auto_renewal
        self.namespace = namespace
        self._local = _InProcessLocks() if not redis_url else None
        self._client = (
            redis_from_url(
                redis_url,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
                health_check_interval=30,
            )
            if redis_url
            else None
        )
        self._cluster = bool(redis_url) and is_cluster_url(redis_url)
        self._redis_down_until = 0.0
        self._renewer = LeaseRenewer(self.ttl_seconds)

    @contextmanager
    def acquire(
        self, *keys: str, operation: str = "slot_lock", operations: dict[str, str] | None = None
    ) -> Iterator[None]:
        """Hold every key (sorted, so two callers never wait on each other in a circle).
        `operation` labels the Redis-down fallbacks of the keys, `operations` of some keys by
        name (the owner's lock taken with slot locks)."""
        operations = operations or {}
        outer = _batch.get()
        if outer is not None and outer.manager is self:
            outer.send()  # never wait for a lease while keeping one a block is done with
            batch = None
        elif self._client is not None and not self._cluster:
            batch = _ReleaseBatch(self)
        else:
            batch = None
        token = _batch.set(batch) if batch is not None else None
        held = _held.get()
        ordered = sorted({key for key in keys if (id(self), key) not in held})
        held_token = _held.set(held | {(id(self), key) for key in ordered})
        try:
            deadline = time.monotonic() + self.wait_seconds
            started = time.monotonic()
            with ExitStack() as stack:
                try:
                    taken = self._take_together(ordered) if len(ordered) > 1 else {}
                    for key in ordered:
                        stack.enter_context(
                            self._one(key, deadline, operations.get(key, operation), taken.get(key))
                        )
                finally:
                    metrics.LOCK_WAIT_SECONDS.observe(time.monotonic() - started)
                yield
        finally:
            _held.reset(held_token)
            if token is not None:
                _batch.reset(token)
            if batch is not None:
                batch.send()

    def _take_together(self, ordered: list[str]) -> dict[str, redis_lock.Lock]:
        """One pipelined SET NX per key, in one round trip: the keys taken before the first
        one found taken are kept (returned, to be held as if polled); those after it are given
        back at once, so that only a prefix of the sorted keys is held while the rest wait
        their turn. Empty when Redis is not asked here (in process, a cluster, Redis down or
        unreachable: the key-by-key path deals with each)."""
        if self._client is None or self._cluster or time.monotonic() < self._redis_down_until:
            return {}
        locks = [self._lock(key) for key in ordered]
        pipe = self._client.pipeline(transaction=False)
        for lock in locks:
            pipe.set(lock._name, lock._id, nx=True, ex=self.ttl_seconds)
        try:
            answers = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            return {}
        kept: dict[str, redis_lock.Lock] = {}
        in_order = True
        for key, lock, answer in zip(ordered, locks, answers, strict=True):
            in_order = in_order and bool(answer)
            if in_order:
                kept[key] = lock
            elif answer:
                self._release(lock, key)
        pairs = list(kept.items())
        for index, (_, lock) in enumerate(pairs):
            try:
                self._hold(lock)
            except BaseException:  # _hold gave this one back; the others go too
                for other_key, other in pairs[:index] + pairs[index + 1 :]:
                    self._release(other, other_key)
                raise
        return kept

    def _one(
        self, key: str, deadline: float, operation: str, taken: redis_lock.Lock | None = None
    ) -> AbstractContextManager[None]:
        if self._local is not None:
            return self._in_process(key, deadline)
        if taken is None and time.monotonic() < self._redis_down_until:
            metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation=operation).inc()
            return _no_lock()
        return self._redis(key, deadline, operation, taken)

    @contextmanager
    def _in_process(self, key: str, deadline: float) -> Iterator[None]:
        assert self._local is not None
        if not self._local.try_acquire(key, max(0.0, deadline - time.monotonic())):
            metrics.LOCK_TIMEOUTS.inc()
            raise LockBusy()
        try:
            yield
        finally:
            self._local.release(key)

    def _lock(self, key: str) -> redis_lock.Lock:
        # python-redis-lock's scripts touch `lock:<name>` and `lock-signal:<name>` together:
        # the hash tag keeps both on one node of a cluster.
        return redis_lock.Lock(
            self._client,
            f"{self.namespace}:{hash_tagged(key)}",
            expire=self.ttl_seconds,
            auto_renewal=False,  # renewed by self._renewer instead
            strict=not self._cluster,  # a RedisCluster is no StrictRedis
        )

    @contextmanager
    def _redis(
        self, key: str, deadline: float, operation: str, taken: redis_lock.Lock | None
    ) -> Iterator[None]:
        lock = taken or self._lock(key)
        try:
            acquired: bool | None = True if taken else self._poll(lock, deadline)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The database guard alone still refuses every overbooking; go on without a lock.
            logger.warning("Redis unreachable for lock %s (%s); database guard only", key, exc)
            metrics.REDIS_UNAVAILABLE_FALLBACKS.labels(operation=operation).inc()
            self._redis_down_until = time.monotonic() + REDIS_DOWN_COOLDOWN_SECONDS
            acquired = None
        if acquired is None:
            yield
            return
        if not acquired:
            metrics.LOCK_TIMEOUTS.inc()
            raise LockBusy()
        try:
            yield
        finally:
            batch = _batch.get()
            if batch is not None and batch.manager is self:
                batch.leases.append((lock, key))  # released by the outermost block's send
            else:
                self._release(lock, key)

    def _poll(self, lock: redis_lock.Lock, deadline: float) -> bool:
        """Try until the lock is ours or the wait is over (the `slot_lock` retry policy:
        jittered pauses of a few milliseconds, no pause past `deadline`). A free lock is
        taken by the first try, without the retry machinery."""
        if self._try_acquire(lock):
            return True
        if time.monotonic() >= deadline:
            return False
        retrying = retry_policy("slot_lock").retrying(
            retry=retry_if_result(lambda acquired: not acquired),
            deadline_at=deadline,
            retry_error_callback=lambda state: False,
        )
        return bool(retrying(self._try_acquire, lock))

    def _try_acquire(self, lock: redis_lock.Lock) -> bool:
        """`lock.acquire(blocking=False)` minus its "do I hold it already?" GET (a fresh Lock
        never does; on the hot path every round trip counts): the same SET NX EX
        (python-redis-lock 4.0.1's key and id, pinned in pyproject.toml)."""
        if not self._client.set(lock._name, lock._id, nx=True, ex=self.ttl_seconds):  # type: ignore[union-attr]
            return False
        self._hold(lock)
        return True

    def _hold(self, lock: redis_lock.Lock) -> None:
        """A lease just taken: renewed from now on (or given back, when renewal cannot start)."""
        if self.auto_renewal:
            try:
                self._renewer.add(lock)
            except BaseException:  # no renewal (no thread could start): do not keep the key
                self._release(lock, lock._name)
                raise

    def _release(self, lock: redis_lock.Lock, key: str) -> None:
        self._renewer.discard(lock)
        try:
            lock.release()
        except redis_lock.NotAcquired:
            _lease_outlived(key)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("Could not release lock %s, it expires on its own: %s", key, exc)

    def _send(
        self, leases: list[tuple[redis_lock.Lock, str]], queued: list[tuple[list[tuple], Sent]]
    ) -> None:
        """One command, one round trip (`_RELEASE_LUA`): the queued commands in order, then
        every lease's release as python-redis-lock's unlock script does it. Six commands of a
        hold's release cost ~2 % of its instructions more than one (docs/benchmarks.md). A
        Redis that lost the script gets it again (redis-py's Script)."""
        for lock, _ in leases:
            self._renewer.discard(lock)
        commands = [command for batch, _ in queued for command in batch]
        words: list = [len(commands)]
        for command in commands:
            words += [len(command), *command]
        words += [lock._id for lock, _ in leases]
        words.append(leases[0][0]._signal_expire if leases else 0)
        keys = [name for lock, _ in leases for name in (lock._name, lock._signal)]
        global _release_script
        if _release_script is None:
            _release_script = self._client.register_script(_RELEASE_LUA)  # type: ignore[union-attr]
        try:
            answers = _release_script(keys=keys, args=words, client=self._client)
        except redis.RedisError as exc:
            for key in dict.fromkeys(key for _, key in leases):
                logger.warning("Could not release lock %s, it expires on its own: %s", key, exc)
            for _, sent in queued:
                sent(exc)
            return
        position = 0
        for batch, sent in queued:
            failures = [a for a in answers[position : position + len(batch)] if a]
            position += len(batch)
            sent(redis.ResponseError(_text(failures[0])) if failures else None)
        for (_, key), answer in zip(leases, answers[position:], strict=True):
            if answer == 1:
                _lease_outlived(key)


# What `_ReleaseBatch.send` runs on Redis in one command. ARGV: the number of queued commands,
# then each as its word count and words (run in order; an error is its answer, "" success);
# then each lease's id, then the signal's expiry (ms). KEYS: each lease's lock and signal key.
# A lease is released as python-redis-lock 4.0.1's UNLOCK_SCRIPT does it (pinned in
# pyproject.toml): 1 when the lock is no longer ours, else 0 and waiters signalled.
# Batches exist only on a single Redis node (not a cluster): undeclared keys are allowed there.
_RELEASE_LUA = """
local answers, at, count = {}, 2, tonumber(ARGV[1])
for c = 1, count do
  local words = {}
  for w = 1, tonumber(ARGV[at]) do words[w] = ARGV[at + w] end
  at = at + #words + 1
  local reply = redis.pcall(unpack(words))
  answers[c] = (type(reply) == 'table' and reply.err) or ''
end
for i = 1, #KEYS / 2 do
  local lock, signal = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('get', lock) ~= ARGV[at] then
    answers[count + i] = 1
  else
    redis.call('del', signal)
    redis.call('lpush', signal, 1)
    redis.call('pexpire', signal, ARGV[#ARGV])
    redis.call('del', lock)
    answers[count + i] = 0
  end
  at = at + 1
end
return answers
"""
_release_script: Script | None = None


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def _lease_outlived(key: str) -> None:
    # Our lease ran out while we worked (a pause, a slow commit): someone else may have held
    # it meanwhile. Our writes were fenced in the database, so only report it.
    logger.warning("Lock %s expired before its release (lease outlived)", key)


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


_managers: dict[str, DistributedLockManager] = {}
_managers_guard = threading.Lock()


def lock_manager() -> DistributedLockManager:
    """The process's lock manager for the configured Redis (or in-process when unset)."""
    url = settings.REDIS_URL
    manager = _managers.get(url)
    if manager is None:
        with _managers_guard:
            manager = _managers.get(url)
            if manager is None:
                manager = DistributedLockManager(
                    redis_url=url,
                    ttl_seconds=settings.LOCK_TTL_SECONDS,
                    wait_seconds=settings.LOCK_WAIT_SECONDS,
                )
                _managers[url] = manager
    return manager
