"""The Celery wiring: a real `celery -A petpro_booking worker` runs the relay task sent
through RabbitMQ, a message no worker can run lands in the dead-letter queue, and the beat
schedule names only tasks that exist."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from kombu import Connection

from petpro_booking.celery import app, dead_letter_queue, task_queues
from petpro_booking.events.models import Event
from petpro_booking.settings import base as base_settings

from .conftest import child_process_env, slot_events

pytestmark = pytest.mark.django_db(transaction=True)

CELERY = str(Path(sys.executable).with_name("celery"))
BROKER = settings.EVENT_BROKER_URL  # the same local RabbitMQ serves as the Celery broker


@pytest.fixture
def worker_queue():
    """A private task queue (and its dead-letter queue) so no other worker takes our tasks."""
    name = f"petpro.tasks.test-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(BROKER) as conn:
        channel = conn.default_channel
        for queue in (*task_queues(name), dead_letter_queue(name)):
            queue(channel).delete()
        task_queues(name)[0].exchange(channel).delete()


def start_worker(queue_name: str, *pool: str, **extra_env: str) -> subprocess.Popen:
    env = child_process_env(CELERY_BROKER_URL=BROKER, CELERY_TASK_QUEUE=queue_name, **extra_env)
    return subprocess.Popen(
        [
            CELERY,
            "-A",
            "petpro_booking",
            "worker",
            *(pool or ("--pool=solo",)),
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def worker(worker_queue):
    process = start_worker(worker_queue)
    yield process
    # Nothing of ours is in flight; a graceful shutdown would only cost seconds.
    process.kill()
    process.wait()


def sender_for(queue_name: str) -> Celery:
    sender = Celery("test-sender", broker=BROKER, set_as_current=False)
    sender.conf.task_default_queue = queue_name
    sender.conf.task_queues = task_queues(queue_name)
    return sender


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_real_worker_runs_tasks_from_rabbitmq_and_dead_letters_poison(
    worker, worker_queue, broker_tap
):
    slot_events("slot-worker", 3)
    sender = sender_for(worker_queue)
    sender.send_task("events.relay_outbox")
    wait_for(
        lambda: not Event.objects.filter(published_at__isnull=True).exists(),
        timeout=60,
        what=f"the worker to relay the outbox ({worker.poll()=})",
    )
    assert len(broker_tap.drain(expect=3)) == 3

    poison_id = sender.send_task("no.such.task").id
    dead = dead_letter_queue(worker_queue)

    def dead_lettered() -> bool:
        with Connection(BROKER) as conn:
            message = dead(conn.default_channel).get(no_ack=True)
            return message is not None and message.headers["id"] == poison_id

    wait_for(dead_lettered, timeout=30, what="the unknown task in the dead-letter queue")


def test_reliability_settings_are_in_force():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_acks_on_failure_or_timeout is False  # failures are dead-lettered
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_time_limit > conf.task_soft_time_limit > 0
    (queue,) = conf.task_queues
    assert queue.queue_arguments["x-dead-letter-exchange"] == "petpro.tasks.dlx"
    relay = app.tasks["events.relay_outbox"]
    assert relay.max_retries == 5
    assert relay.retry_backoff


def test_every_beat_job_names_a_registered_task():
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"events.relay_outbox", "bookings.appointment_reminders_send"} <= scheduled
    assert scheduled <= set(app.tasks)


def _sessions_opened() -> int:
    """PostgreSQL backends ever started for this database (a backend reports itself at the
    latest when it exits)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _queue_depth(queue_name: str) -> int:
    with Connection(BROKER) as conn:
        return task_queues(queue_name)[0](conn.default_channel).queue_declare(passive=True)[1]


def test_a_prefork_worker_keeps_its_database_pool_across_tasks(worker_queue):
    """Celery's Django fixup would close the pool after every task: a new pool, and new
    PostgreSQL backends, per task. Here 50 tasks in two prefork children open only the
    children's pools (2 x min_size), whatever the number of tasks."""
    before = _sessions_opened()
    process = start_worker(
        worker_queue,
        "--pool=prefork",
        "--concurrency=2",
        # what production runs with (settings/base.py); the test settings leave it unset
        CELERY_DB_REUSE_MAX=str(base_settings.CELERY_DB_REUSE_MAX),
    )
    try:
        sender = sender_for(worker_queue)
        for _ in range(50):
            sender.send_task("events.relay_outbox")
        wait_for(
            lambda: _queue_depth(worker_queue) == 0,
            timeout=60,
            what=f"the worker to run 50 tasks ({process.poll()=})",
        )
        time.sleep(1.0)  # the last task acknowledged (acks_late) is done
    finally:
        process.terminate()  # warm shutdown: the children exit and their backends report
        process.wait(timeout=30)
    opened: list[int] = []
    wait_for(
        lambda: opened.append(_sessions_opened() - before) or opened[-1] >= 2,
        timeout=10,
        what="the worker's backends to report",
    )
    time.sleep(0.5)
    new_backends = _sessions_opened() - before
    assert 2 <= new_backends <= 8, f"{new_backends} new backends for 50 tasks"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def _children_after_tasks(worker_queue: str, **extra_env: str) -> tuple[set[int], set[int]]:
    """A prefork worker with one child: its child before and after three tasks."""
    process = start_worker(worker_queue, "--pool=prefork", "--concurrency=1", **extra_env)
    try:
        wait_for(lambda: len(_children(process.pid)) == 1, timeout=60, what="the worker's child")
        sender = sender_for(worker_queue)
        sender.send_task("events.relay_outbox")  # the child has started and run a task
        wait_for(lambda: _queue_depth(worker_queue) == 0, timeout=60, what="the first task")
        time.sleep(1.0)
        wait_for(lambda: len(_children(process.pid)) == 1, timeout=30, what="one child")
        before = _children(process.pid)
        for _ in range(3):
            sender.send_task("events.relay_outbox")
        wait_for(lambda: _queue_depth(worker_queue) == 0, timeout=60, what="three tasks")
        time.sleep(1.0)
        wait_for(lambda: len(_children(process.pid)) == 1, timeout=30, what="one child")
        return before, _children(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_worker_child_past_its_memory_bound_is_replaced_after_its_task(worker_queue):
    """CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB: a child whose resident memory passed the bound
    finishes its task and is replaced (1 KiB: after every task); under the default bound the
    same child runs every task."""
    before, after = _children_after_tasks(worker_queue, CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB="1")
    assert before.isdisjoint(after), (before, after)
    before, after = _children_after_tasks(worker_queue)
    assert before == after
    assert base_settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD == 350 * 1024


def _outbox_events(aggregates: int, per_aggregate: int) -> int:
    """`aggregates` x `per_aggregate` events, one transaction per aggregate (quicker than one
    per event; the relay does not care)."""
    from django.db import transaction

    from petpro_booking.events.services import event_append

    for aggregate in range(aggregates):
        with transaction.atomic():
            for seq in range(per_aggregate):
                event_append(
                    aggregate_type="slot",
                    aggregate_id=f"slot-killed-{aggregate}",
                    event_type="SlotUpdated",
                    data={"slot_id": f"slot-killed-{aggregate}", "seq": seq},
                )
    return aggregates * per_aggregate


def test_a_task_whose_worker_child_is_killed_is_run_again(worker_queue, broker_tap):
    """acks_late + reject_on_worker_lost: a relay pass whose prefork child dies by SIGKILL in
    the middle (an OOM kill, a node lost) is delivered again to the new child, which finishes
    the outbox. Nothing else sends a relay task here (no beat, no nudges): without the
    redelivery the outbox would stay half published."""
    total = _outbox_events(30, 50)
    process = start_worker(
        worker_queue, "--pool=prefork", "--concurrency=1", EVENT_RELAY_BATCH_SIZE="20"
    )
    try:
        wait_for(lambda: len(_children(process.pid)) == 1, timeout=60, what="the worker's child")
        (child,) = _children(process.pid)
        sender_for(worker_queue).send_task("events.relay_outbox")

        def published() -> int:
            return Event.objects.filter(published_at__isnull=False).count()

        wait_for(lambda: published() > 0, timeout=60, what="the relay pass to start")
        done_when_killed = published()
        subprocess.run(["kill", "-KILL", str(child)], check=True)
        assert done_when_killed < total, "the pass ended before the kill: nothing was tested"
        wait_for(
            lambda: published() == total,
            timeout=90,
            what=f"the task to run again in a new child ({process.poll()=})",
        )
        assert child not in _children(process.pid)  # a new child did it
    finally:
        process.kill()
        process.wait()
    ids = {message.message_id for message in broker_tap.drain(expect=total, timeout=30)}
    assert len(ids) == total  # every event published; one killed mid-batch may come twice
