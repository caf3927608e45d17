"""Request bodies sent with `Transfer-Encoding: chunked`, handed to Django with their length.

Django reads a request body only as far as CONTENT_LENGTH, which a chunked request has none of,
so it saw an empty body: a chunked hold answered "slot_id: This field is required." and a
chunked payment webhook failed its signature (401), a payment never confirmed. gunicorn takes
the chunks apart and says so (`wsgi.input_terminated`); this wrapper reads the body, at most
one byte past DATA_UPLOAD_MAX_MEMORY_SIZE, and gives Django the bytes with their length. A
larger body stays larger than the limit, so Django refuses it as it refuses any body too large
(400 `validation_error`, `details.body`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings


class ChunkedBodies:
    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("wsgi.input_terminated")
            and not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(limit + 1 if limit is not None else -1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)
