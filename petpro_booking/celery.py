"""The Celery application: worker and beat run with `celery -A petpro_booking worker` and
`celery -A petpro_booking beat`.

Every task inherits `PetProTask`: JSON arguments only, acknowledged after it ran (a worker that
dies mid-task leaves the message to be delivered again), bounded retries with exponential
backoff and jitter on transient failures. A task that still fails -- or a message no worker
can run (unknown task, undecodable body) -- is rejected without requeue, and RabbitMQ moves it
to the dead-letter queue `<task queue>.dead` (declared at worker start and by
`manage.py setup_broker`), where support can inspect it instead of it looping forever.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, Task, signals
from django.db import InterfaceError, OperationalError
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError as BrokerOperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petpro_booking.settings.local")

logger = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "petpro.tasks.dlx"


def _transient_errors() -> tuple[type[BaseException], ...]:
    from petpro_booking.core.errors import DependencyUnavailable

    return (OperationalError, InterfaceError, BrokerOperationalError, DependencyUnavailable)


class PetProTask(Task):
    """Defaults of every task of the project (see the module docstring)."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = _transient_errors()
    max_retries = 5
    retry_backoff = 2  # 2, 4, 8, ... seconds
    retry_backoff_max = 300
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        from petpro_booking.core import metrics

        metrics.TASK_FAILURES.labels(task=self.name).inc()
        logger.error("task %s[%s] failed for good: %r", self.name, task_id, exc)


def task_queues(queue_name: str) -> tuple[Queue, ...]:
    """The work queue; its rejected messages are dead-lettered to `<queue>.dead`."""
    return (
        Queue(
            queue_name,
            Exchange(queue_name, type="direct", durable=True),
            routing_key=queue_name,
            durable=True,
            queue_arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": queue_name,
            },
        ),
    )


def dead_letter_queue(queue_name: str) -> Queue:
    return Queue(
        f"{queue_name}.dead",
        Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
        routing_key=queue_name,
        durable=True,
    )


app = Celery("petpro_booking", task_cls=PetProTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Appointment reminders live in bookings/reminders.py (the bookings app owns tasks.py).
app.autodiscover_tasks(related_name="reminders")


@app.on_after_configure.connect
def _queues(sender: Celery, **kwargs) -> None:
    queue_name = sender.conf.task_default_queue
    sender.conf.task_queues = task_queues(queue_name)


def declare_dead_letter_queue() -> str:
    """Declare the dead-letter exchange and queue of the task queue; returns the queue name."""
    queue = dead_letter_queue(app.conf.task_default_queue)
    with app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
    return queue.name


@signals.celeryd_after_setup.connect
def _declare_dead_letters(sender, instance, conf, **kwargs) -> None:
    if conf.broker_url.startswith("memory"):
        return
    try:
        declare_dead_letter_queue()
    except Exception:  # the worker still runs; setup_broker declares it too
        logger.warning("dead-letter queue not declared", exc_info=True)


@signals.task_postrun.connect
def _return_connections_to_the_pool(sender=None, **kwargs) -> None:
    """After every task run by a worker, hand its database connections back to the process's
    pool (with a psycopg pool, `close()` returns the connection; the pool and its PostgreSQL
    backends stay). Celery's Django fixup would instead close the whole pool after every task
    (a new pool and new backends per task: ~5 ms of PostgreSQL CPU each); with
    `CELERY_DB_REUSE_MAX` set it leaves the pool alone and only recycles it every
    2 x that many tasks."""
    if sender is None or getattr(sender.request, "is_eager", False):
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        # A connection shared with another thread (a test's in-process worker) is not ours.
        if not connection.in_atomic_block and not connection.allow_thread_sharing:
            connection.close()
