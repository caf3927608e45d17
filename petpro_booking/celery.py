"""The Celery application: worker and beat run with `celery -A petpro_booking ...`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petpro_booking.settings.local")

app = Celery("petpro_booking")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
