"""`Idempotency-Key` on mutating POSTs, with Stripe's semantics (docs/holds.md).

Put `@idempotent` on a DRF view method (`create`, or an `@action`; above `@action` when both
are used). Without the header the view runs as usual. With it:

* the key is scoped to the caller (`principal` = the token's `sub`);
* the first request claims the key (a row with no response yet, committed at once), runs, and
  stores its status, body and the headers a client acts on (`Location`, `ETag`,
  `Content-Type`); the same key and body within 24 h replays that response (header
  `Idempotent-Replayed: true`) without running the view again;
* the same key with another method, path or body is 422 `idempotency_key_reused`;
* the same key while the first request is still running is 409 `idempotency_key_in_use`;
* answers a retry could change are not stored, so the key stays usable: 5xx, 400
  `validation_error` (nothing ran), 409 `slot_busy`, 429, 503. Stripe does the same.

A claim left behind by a crashed process is taken over after IDEMPOTENCY_IN_FLIGHT_SECONDS.
Keys older than IDEMPOTENCY_KEY_TTL_SECONDS are ignored and purged hourly by
`idempotency_keys_purge` (celery beat).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from .errors import Conflict, ValidationFailed
from .models import IdempotencyKey
from .permissions import request_principal

HEADER = "Idempotency-Key"
_META_KEY = "HTTP_IDEMPOTENCY_KEY"  # HEADER as WSGI names it
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Retryable answers: storing them would pin the failure to the key.
UNSTORED_CODES = frozenset({"validation_error", "slot_busy", "rate_limited"})
# What a replay repeats besides status and body: where the new resource is (a 201's Location),
# its version (ETag, for the next If-Match) and the body's type. Content-Type goes through the
# renderer (`content_type=`), which would overwrite a plain header.
REPLAYED_HEADERS = ("Location", "ETag")
CONTENT_TYPE = "Content-Type"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID v4 is a good choice), at most 255 characters. A retry with "
        "the same key and body within 24 h gets the first response again (header "
        "`Idempotent-Replayed: true`) instead of repeating the change; the same key with "
        "another body is 422 `idempotency_key_reused`; while the first request still runs, "
        "409 `idempotency_key_in_use`."
    ),
)


class IdempotencyKeyReused(ValidationFailed):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with another request; use a new key."


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    default_message = "A request with this Idempotency-Key is still running; retry shortly."


def _ttl() -> dt.timedelta:
    return dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)


def request_fingerprint(request: Request) -> str:
    """sha256 of method, path and the parsed body (key order and whitespace do not matter)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    raw = f"{request.method}\n{request.path}\n{body}".encode()
    return hashlib.sha256(raw).hexdigest()


def _claim(*, principal: str, key: str, request: Request, fingerprint: str) -> Response | None:
    """Claim the key for this request (None), or answer from an earlier one (a Response) or
    refuse (raises). The claim commits at once so concurrent requests see it."""
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    key=key,
                    principal=principal,
                    method=request.method or "",
                    path=request.path[:500],
                    request_hash=fingerprint,
                )
            return None
        except IntegrityError:
            existing = IdempotencyKey.objects.filter(principal=principal, key=key).first()
        if existing is None:
            continue  # the first request gave the key back meanwhile: claim it again
        now = timezone.now()
        if existing.created_at <= now - _ttl():
            # Older than 24 h: forgotten, whatever the purge job has not deleted yet.
            IdempotencyKey.objects.filter(id=existing.id, created_at=existing.created_at).delete()
            continue
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                details={"method": existing.method, "path": existing.path},
            )
        if existing.response_status is None:
            abandoned = now - dt.timedelta(seconds=settings.IDEMPOTENCY_IN_FLIGHT_SECONDS)
            if existing.created_at <= abandoned and IdempotencyKey.objects.filter(
                id=existing.id, response_status__isnull=True, created_at=existing.created_at
            ).update(created_at=now):
                return None  # the first request died without an answer: take its claim over
            raise IdempotencyKeyInUse()
        return _replay(existing)
    raise IdempotencyKeyInUse()


def _replay(stored: IdempotencyKey) -> Response:
    """The stored answer again; a row stored before headers were kept has none."""
    headers = dict(stored.response_headers or {})
    content_type = headers.pop(CONTENT_TYPE, None)
    return Response(
        stored.response_body,
        status=stored.response_status,
        headers={**headers, REPLAYED_HEADER: "true"},
        content_type=content_type,
    )


def _headers_to_replay(request: Request, response: Response) -> dict[str, str]:
    """The first response's headers a replay repeats. It is not rendered yet, so its
    Content-Type is what the negotiated renderer will write (or the view's own choice)."""
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    content_type = response.content_type
    renderer = getattr(request, "accepted_renderer", None)
    if content_type is None and renderer is not None:
        charset = renderer.charset
        content_type = (
            f"{renderer.media_type}; charset={charset}" if charset else renderer.media_type
        )
    if content_type:
        headers[CONTENT_TYPE] = content_type
    return headers


def _should_store(response: Response) -> bool:
    if response.status_code >= 500 or response.status_code in (429, 503):
        return False
    error = response.data.get("error") if isinstance(response.data, dict) else None
    return not (isinstance(error, dict) and error.get("code") in UNSTORED_CODES)


def _finish(*, principal: str, key: str, request: Request, response: Response | None) -> None:
    claim = IdempotencyKey.objects.filter(
        principal=principal, key=key, response_status__isnull=True
    )
    if response is None or not _should_store(response):
        claim.delete()
        return
    body = json.loads(json.dumps(response.data, cls=JSONEncoder))
    claim.update(
        response_status=response.status_code,
        response_body=body,
        response_headers=_headers_to_replay(request, response),
    )


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Make a mutating view method honour `Idempotency-Key` (see the module docstring)."""

    @functools.wraps(view_method)
    def wrapper(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.META.get(_META_KEY)  # not request.headers: built from all of META
        if key is None:
            return view_method(self, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationFailed(
                details={HEADER: [f"1 to {MAX_KEY_LENGTH} printable characters."]}
            )
        principal = request_principal(request).sub
        fingerprint = request_fingerprint(request)
        earlier = _claim(principal=principal, key=key, request=request, fingerprint=fingerprint)
        if earlier is not None:
            return earlier
        response: Response | None = None
        try:
            try:
                response = view_method(self, request, *args, **kwargs)
            except Exception as exc:
                # What dispatch() would do with it; re-raises what is not an API error (500).
                response = self.handle_exception(exc)
        finally:
            _finish(principal=principal, key=key, request=request, response=response)
        return response

    # The schema documents the key and the answers it adds (core/openapi.py).
    wrapper.idempotent = True  # type: ignore[attr-defined]
    return extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)


def idempotency_keys_purge(
    *, older_than: dt.timedelta | None = None, batch_size: int | None = None
) -> int:
    """Delete keys past their 24 h, in batches claimed with SKIP LOCKED (a key being replayed
    right now is left for the next run); returns how many."""
    cutoff = timezone.now() - (older_than if older_than is not None else _ttl())
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    deleted = 0
    while True:
        with transaction.atomic():
            expired = IdempotencyKey.objects.filter(created_at__lt=cutoff).order_by("id")
            if connection.features.has_select_for_update_skip_locked:
                expired = expired.select_for_update(skip_locked=True)
            ids = list(expired.values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += IdempotencyKey.objects.filter(id__in=ids).delete()[0]
