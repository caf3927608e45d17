"""JSON structured logs (structlog) for web, worker and beat, with trace ids and no PII."""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse

from . import tracing

SERVICE_NAME_DEFAULT = "petpro-booking"
REDACTED = "[redacted]"

# Keys whose values never reach a log line: contact data, names, secrets, raw bodies.
_PII_KEYS = frozenset(
    {
        "address",
        "api_key",
        "authorization",
        "body",
        "checkout_url",
        "cookie",
        "first_name",
        "full_name",
        "last_name",
        "name",
        "owner_name",
        "password",
        "payload",
        "pet_name",
        "provider_payload",
        "raw_body",
        "reason",  # free text people write (cancel reasons, notes)
        "internal_note",
        "recipient",
        "signature",
        "webhook_body",
    }
)
_PII_KEY_PARTS = ("email", "phone", "token", "secret", "password", "signature")
# Values that look like contact data or credentials, wherever they appear in a message; each
# with text that every match contains (lower case: looked for in the lowered text), so a value
# without it skips the expression (every request's access line is scrubbed: docs/benchmarks.md).
_PII_PATTERNS = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]", "@"),
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*"), "[jwt]", "eyj"),
    (re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"), "Bearer [redacted]", "bearer"),
    (re.compile(r"\+\d[\d\s().-]{6,}\d"), "[phone]", "+"),
    (re.compile(r"sha256=[0-9a-fA-F]{16,}"), "sha256=[redacted]", "sha256="),
)
_REQUEST_ID_RE = re.compile(r"^[\w.:-]{1,64}$")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
# URL names of the DRF routers ("booking-detail") -> the context key their `pk` binds.
_ROUTE_ID_KEYS = {
    "booking": "bookingId",
    "reservation": "reservationId",
    "clinic": "clinicId",
    "slot": "slotId",
}

# Ids named in a route's own arguments (checked like a request id: a str path argument is
# whatever the caller sent).
_ROUTE_ID_ARGUMENTS = {
    "reservation_id": "reservationId",
    "booking_id": "bookingId",
    "slot_id": "slotId",
}

# Probes and scrapes arrive every few seconds: their access lines are DEBUG.
_QUIET_PATHS = frozenset({"healthz", "readyz", "metrics"})


def _component_from_command() -> str:
    """SERVICE_COMPONENT when set (the chart and compose set it), else guessed from argv."""
    if os.environ.get("SERVICE_COMPONENT"):
        return os.environ["SERVICE_COMPONENT"]
    args = sys.argv[1:]
    for name in ("beat", "worker", "migrate"):
        if name in args:
            return name
    return "web"


_component = _component_from_command()
_configured = False


def set_component(name: str) -> None:
    """Which process writes the logs: web, worker, beat or migrate."""
    global _component
    _component = name


def service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME_DEFAULT


# --- processors -------------------------------------------------------------------------------


def _add_service(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("service", service_name())
    event.setdefault("component", _component)
    event.setdefault("pid", os.getpid())  # which gunicorn worker or Celery child
    return event


def current_trace_ids() -> tuple[str | None, str | None]:
    """(traceId, spanId): the active OpenTelemetry span when tracing is on, otherwise the ids
    the request middleware or the Celery task hook bound for this request or task."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
    bound = structlog.contextvars.get_contextvars()
    return bound.get("traceId"), bound.get("spanId")


def _add_trace_ids(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    if tracing.tracing_active():
        event["traceId"], event["spanId"] = current_trace_ids()
    else:  # the ids the request or task bound, which merge_contextvars put in already
        event.setdefault("traceId", None)
        event.setdefault("spanId", None)
    return event


def _scrub_text(text: str) -> str:
    lowered = text.lower()
    for pattern, replacement, needed in _PII_PATTERNS:
        if needed in lowered:
            text = pattern.sub(replacement, text)
            lowered = text.lower()
    return text


@functools.lru_cache(maxsize=1024)  # a log line's keys come from a small set
def _is_pii_key(key: str) -> bool:
    normalized = key.lower().replace("-", "_")
    return normalized in _PII_KEYS or any(part in normalized for part in _PII_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_pii_key(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


# Values the service writes itself, never a person's text: not scanned (every request's
# access line is scrubbed). requestId and userId come from the caller: scanned.
_OWN_KEYS = frozenset({"timestamp", "level", "service", "component", "traceId", "spanId", "logger"})


def mask_pii(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace PII-named keys and PII-looking strings (emails, phones, tokens) everywhere."""
    for key in list(event):
        if key.startswith("_") or key in _OWN_KEYS:
            continue
        if _is_pii_key(key):
            event[key] = REDACTED
        else:
            event[key] = _scrub(event[key])
    return event


_LEADING_KEYS = ("timestamp", "level", "service", "component", "traceId", "spanId", "message")


def _event_to_message(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """`event` becomes `message`; the mandatory fields lead every line, context follows."""
    event["message"] = event.pop("event", "")
    ordered = {key: event.pop(key, None) for key in _LEADING_KEYS}
    ordered.update(event)
    return ordered


def _shared_processors() -> list[Callable[..., Any]]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service,
        _add_trace_ids,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_pii,
        _event_to_message,
    ]


def configure_structlog() -> None:
    """structlog loggers hand their event dicts to the stdlib handler (one output path)."""
    global _configured
    if _configured:
        return
    # No line shows the caller's file and line, thread or process name (pid comes from
    # _add_service): the logging HOWTO's "Optimization" switches, so no record looks them up.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True


def json_formatter() -> logging.Formatter:
    """The formatter of every handler (`LOGGING["formatters"]`): one JSON object per line,
    for structlog and plain `logging` records alike."""
    configure_structlog()
    renderer: Any
    if os.environ.get("LOG_FORMAT", "json").lower() == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)


def bind_log_context(**ids: str | int | None) -> None:
    """Add ids (userId, bookingId, reservationId, clinicId, ...) to every later log line of this
    request or task. Ids only: the PII processor masks anything else anyway."""
    structlog.contextvars.bind_contextvars(
        **{key: str(value) for key, value in ids.items() if value is not None}
    )


def bound_log_context() -> dict[str, Any]:
    return structlog.contextvars.get_contextvars()


def new_trace_ids(traceparent: str | None = None) -> tuple[str, str]:
    """Ids for log correlation when tracing is off: continue the caller's W3C `traceparent`
    when it sends one, else start a new trace."""
    match = _TRACEPARENT_RE.match((traceparent or "").strip().lower())
    trace_id = match.group(1) if match else secrets.token_hex(16)
    return trace_id, secrets.token_hex(8)


def _request_id(request: HttpRequest) -> str:
    # request.META, not request.headers (a mapping of every header, built on first use): read
    # on every request, as are `traceparent` (below) and `Idempotency-Key` (core/idempotency)
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


class RequestLogContextMiddleware:
    """Binds requestId, traceId/spanId and the route's ids for the request's log lines, writes
    one access line per request and echoes `X-Request-ID`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.logger = get_logger("petpro.request")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from petpro_booking.core import metrics_export

        metrics_export.ensure_db_pool_sampler()
        structlog.contextvars.clear_contextvars()
        request_id = _request_id(request)
        trace_id, span_id = new_trace_ids(request.META.get("HTTP_TRACEPARENT"))
        structlog.contextvars.bind_contextvars(
            requestId=request_id, traceId=trace_id, spanId=span_id
        )
        started = time.perf_counter()
        quiet = request.path.strip("/") in _QUIET_PATHS
        if quiet and tracing.tracing_active():
            # Probes every few seconds: no root spans for their DB and Redis calls.
            from opentelemetry.instrumentation.utils import suppress_instrumentation

            with suppress_instrumentation():
                response = self.get_response(request)
        else:
            response = self.get_response(request)
        principal = getattr(request, "user", None)
        if getattr(principal, "sub", None):
            bind_log_context(userId=principal.sub)  # type: ignore[union-attr]
        match = request.resolver_match
        if response.status_code >= 500:
            level = logging.WARNING
        elif quiet:
            level = logging.DEBUG
        else:
            level = logging.INFO
        self.logger.log(
            level,
            "request finished",
            method=request.method,
            path=request.path,
            route=match.view_name if match else None,
            status=response.status_code,
            durationMs=round((time.perf_counter() - started) * 1000, 2),
        )
        response["X-Request-ID"] = request_id
        # The ids stay bound until the next request starts: Django's own "django.request"
        # line for a 4xx/5xx is written after the middleware chain returns.
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        match = request.resolver_match
        if match and match.url_name and "pk" in view_kwargs:
            key = _ROUTE_ID_KEYS.get(match.url_name.split("-")[0])
            if key:
                bind_log_context(**{key: view_kwargs["pk"]})
        for argument, key in _ROUTE_ID_ARGUMENTS.items():  # /reservations/{reservation_id}/...
            value = view_kwargs.get(argument)
            if value is not None and _REQUEST_ID_RE.match(str(value)):
                bind_log_context(**{key: value})
        clinic_id = request.GET.get("clinic_id")
        if clinic_id and _REQUEST_ID_RE.match(clinic_id):
            bind_log_context(clinicId=clinic_id)


# --- Celery: the publishing request's ids travel in the message headers ---------------------

HEADER_TRACE_ID = "petpro_trace_id"
HEADER_REQUEST_ID = "petpro_request_id"


def _on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    trace_id, _span_id = current_trace_ids()
    request_id = bound_log_context().get("requestId")
    if trace_id:
        headers.setdefault(HEADER_TRACE_ID, trace_id)
    if request_id:
        headers.setdefault(HEADER_REQUEST_ID, request_id)


def _task_header(task: Any, name: str) -> str | None:
    value = getattr(task.request, name, None)
    if value is None:
        value = (getattr(task.request, "headers", None) or {}).get(name)
    return str(value) if value else None


_EAGER_TOKENS: dict[str, Mapping[str, Any]] = {}


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or task_id is None:
        return
    if task.request.is_eager:
        # Runs inline in the caller's request: keep its ids, add the task's, undo afterwards.
        _EAGER_TOKENS[task_id] = structlog.contextvars.bind_contextvars(
            taskId=task_id, taskName=task.name
        )
        return
    structlog.contextvars.clear_contextvars()
    trace_id = _task_header(task, HEADER_TRACE_ID)
    structlog.contextvars.bind_contextvars(
        taskId=task_id,
        taskName=task.name,
        requestId=_task_header(task, HEADER_REQUEST_ID) or task_id,
        traceId=trace_id or secrets.token_hex(16),
        spanId=secrets.token_hex(8),
    )


def _on_task_postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    tokens = _EAGER_TOKENS.pop(task_id or "", None)
    if tokens is not None:
        structlog.contextvars.reset_contextvars(**tokens)
    elif task is not None and not task.request.is_eager:
        structlog.contextvars.clear_contextvars()


def _on_worker_start(**_: Any) -> None:
    set_component("worker")


def _on_beat_start(**_: Any) -> None:
    set_component("beat")


def install_celery_hooks() -> None:
    from celery import signals

    signals.before_task_publish.connect(_on_before_task_publish, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
    signals.celeryd_init.connect(_on_worker_start, weak=False)
    signals.beat_init.connect(_on_beat_start, weak=False)
