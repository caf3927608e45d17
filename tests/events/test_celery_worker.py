"""The Celery wiring: a real `celery -A petpro_booking worker` runs the relay task sent
through RabbitMQ, a message no worker can run lands in the dead-letter queue, and the beat
schedule names only tasks that exist."""

from __future__ import annotations

import os
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

from .conftest import slot_events

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


@pytest.fixture
def worker(worker_queue):
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_QUEUE": worker_queue,
        "EVENT_EXCHANGE": settings.EVENT_EXCHANGE,
    }
    process = subprocess.Popen(
        [
            CELERY,
            "-A",
            "petpro_booking",
            "worker",
            "--pool=solo",
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
