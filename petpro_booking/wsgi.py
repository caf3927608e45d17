"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

from petpro_booking.core.chunked import ChunkedBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petpro_booking.settings.local")

# A chunked request's body read before Django sees it (core/chunked.py).
application = ChunkedBodies(get_wsgi_application())
