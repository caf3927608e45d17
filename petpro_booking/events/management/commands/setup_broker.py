"""`manage.py setup_broker`: declare the event exchange, its queues and the task dead-letter
queue on RabbitMQ (the relay and the worker declare them too; this makes it explicit)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.messaging.client import publisher_get
from integrations.messaging.messages import QUEUE_NAMES
from petpro_booking.celery import app, declare_dead_letter_queue


class Command(BaseCommand):
    help = "Declare the durable exchange and queues of the event broker (and Celery's)."

    def handle(self, *args, **options) -> None:
        if not settings.EVENT_BROKER_URL:
            self.stdout.write(
                "EVENT_BROKER_URL is not set: messages go to the log sink "
                f"{settings.EVENT_LOG_SINK_PATH}; nothing to declare."
            )
        else:
            try:
                publisher_get().declare()
            except Exception as exc:
                raise CommandError(f"event broker not reachable: {exc}") from exc
            self.stdout.write(
                f"exchange {settings.EVENT_EXCHANGE} (topic, durable); queues: "
                + ", ".join(QUEUE_NAMES)
            )
        if app.conf.task_always_eager:
            self.stdout.write("CELERY_BROKER_URL is not set: tasks run eagerly; no task queues.")
            return
        try:
            dead = declare_dead_letter_queue()
        except Exception as exc:
            raise CommandError(f"Celery broker not reachable: {exc}") from exc
        self.stdout.write(f"task queue {app.conf.task_default_queue}; dead letters: {dead}")
