"""Trace and correlation ids of the current request or task, carried into event metadata."""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from petpro_booking.core.logging import bound_log_context

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


def bind(*, correlation_id: str | None = None, trace_id: str | None = None) -> None:
    if correlation_id is not None:
        _correlation_id.set(correlation_id)
    if trace_id is not None:
        _trace_id.set(trace_id)


def current_trace_id() -> str | None:
    """The OpenTelemetry trace id when a span is active, else the bound one."""
    try:
        from opentelemetry import trace

        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            return format(span_context.trace_id, "032x")
    except ImportError:  # pragma: no cover - opentelemetry is a dependency
        pass
    # Tracing off: the id the request middleware or task hook put on the log lines.
    return _trace_id.get() or bound_log_context().get("traceId")


def current_context() -> dict[str, Any]:
    return {
        "trace_id": current_trace_id(),
        "correlation_id": _correlation_id.get()
        or bound_log_context().get("requestId")
        or str(uuid.uuid4()),
    }
