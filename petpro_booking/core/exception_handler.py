"""Turns every error into the envelope `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from . import metrics
from .db import database_unavailable
from .errors import ApplicationError, Contention, DependencyUnavailable

logger = logging.getLogger(__name__)
# A pool that found no connection in time, or a restarting server, is usually back within
# seconds: the client waits this long before it tries again.
DATABASE_RETRY_AFTER_SECONDS = 2

_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "validation_error"),
    (exceptions.ParseError, "validation_error"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


def _throttled_if_over_limit(
    exc: exceptions.APIException, context: dict[str, Any]
) -> exceptions.APIException:
    """DRF authenticates and checks permissions before it throttles, so a caller without a
    valid token, or with a token whose role may not call the view, would never reach a rate
    limit; count those requests here (every caller counts: the IP limit, and the user's when
    the token is valid). A request the throttle already counted is not counted again."""
    from .throttles import RateLimitThrottle, rate_limit_counted

    request = context.get("request")
    if request is None or rate_limit_counted(request):
        return exc
    throttle = RateLimitThrottle()
    if throttle.allow_request(request, context.get("view")):
        return exc
    return exceptions.Throttled(wait=throttle.wait())


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope; the message in the request's language (Accept-Language: en, id) when the
    catalogue has it, English otherwise. The code never changes."""
    return {"error": {"code": code, "message": gettext(str(message)), "details": details or {}}}


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: the only place an exception becomes an HTTP response."""
    if isinstance(exc, ApplicationError):
        set_rollback()
        retry = None
        if isinstance(exc, Contention):
            retry = {"Retry-After": str(exc.details.get("retry_after_seconds", 1))}
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=retry
        )
    if isinstance(exc, DatabaseError) and (reason := database_unavailable(exc)) is not None:
        return _database_unavailable(exc, reason)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500 through handler500
    if isinstance(
        exc,
        exceptions.NotAuthenticated | exceptions.AuthenticationFailed | exceptions.PermissionDenied,
    ):
        exc = _throttled_if_over_limit(exc, context)

    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid."
        detail = exc.detail
        details: dict[str, Any] = (
            detail if isinstance(detail, dict) else {"non_field_errors": detail}
        )
    else:
        message = str(exc.detail)
        details = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        details = {"retry_after_seconds": int(headers["Retry-After"])}
        message = "Too many requests; retry later."
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    set_rollback()
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


def _database_unavailable(exc: Exception, reason: str) -> Response:
    """PostgreSQL could not serve the request (no pooled connection in time, a connection
    failed or was lost, the server is starting, stopping or out of resources, a statement ran
    past statement_timeout): 503 with Retry-After, as for any dependency the service cannot
    reach, not a 500 that blames the code. Logged with its traceback and counted; whatever the
    request had begun is rolled back with its transaction."""
    logger.warning("The database could not serve the request (%s)", reason, exc_info=exc)
    metrics.DATABASE_UNAVAILABLE.labels(reason=reason).inc()
    set_rollback()
    error = DependencyUnavailable("database")
    details = {**error.details, "retry_after_seconds": DATABASE_RETRY_AFTER_SECONDS}
    return Response(
        error_body(error.code, error.message, details),
        status=error.status_code,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def api_not_found(request, exception=None) -> JsonResponse:
    """Anything unknown under /api/ (no view, so no DRF throttle ran): the JSON 404, counted
    against the caller's IP limit as every request is, so a scanner walking paths meets the
    limit (429 with Retry-After) instead of never being counted."""
    from types import SimpleNamespace

    from .throttles import RateLimitThrottle

    throttle = RateLimitThrottle()
    caller = SimpleNamespace(user=None, META=request.META)  # no token is read for a 404
    if throttle.allow_request(caller, None):  # type: ignore[arg-type]
        return json_not_found(request, exception)
    wait = max(1, int((throttle.wait() or 1) + 0.999))
    body = error_body(
        "rate_limited", "Too many requests; retry later.", {"retry_after_seconds": wait}
    )
    return JsonResponse(body, status=429, headers={"Retry-After": str(wait)})


def json_server_error(request) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "Something went wrong on our side; it has been logged."),
        status=500,
    )


def _bad_request_reason(exception: Exception | None) -> tuple[str, dict[str, list[str]]]:
    """What Django refused before any view ran (its handler400), said plainly."""
    if isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return "Too many parameters.", {"request": [f"At most {limit} query or form fields."]}
    if isinstance(exception, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return "Too many files.", {"request": [f"At most {limit} files."]}
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return "The request body is too large.", {"body": [f"At most {limit} bytes."]}
    return "Bad request.", {}


def json_bad_request(request, exception=None, *, reason: str | None = None) -> JsonResponse:
    message, details = _bad_request_reason(exception)
    if reason is not None:
        message, details = "Bad request.", {"request": [reason]}
    return JsonResponse(error_body("validation_error", message, details), status=400)


def get_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A plain Django view outside the API (the probes, /metrics) that answers GET and HEAD:
    any other method is 405 with the envelope and `Allow`, where a POST met Django's CSRF
    check first and got its HTML 403 page."""

    @csrf_exempt
    @functools.wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return JsonResponse(
                error_body("method_not_allowed", "Only GET and HEAD are allowed here."),
                status=405,
                headers={"Allow": "GET, HEAD"},
            )
        return view(request, *args, **kwargs)

    return answer
