"""OpenTelemetry tracing: Django, psycopg, Redis, Celery and httpx, exported over OTLP.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER` is
set: then nothing is imported from the SDK and no instrumentation is installed, so tracing costs
nothing in the embedded default. Sampling: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`;
when the sampler is not named, parent-based trace-id ratio with the ratio from
`OTEL_TRACES_SAMPLER_ARG` (default 1.0; production 0.1, staging 1.0).
"""

from __future__ import annotations

import os
from typing import Any

from .env_numbers import env_number

# Probes and the metrics scrape would flood traces without telling anything.
DEFAULT_EXCLUDED_URLS = "healthz,readyz,metrics"

_instrumentors: list[Any] = []
_provider: Any = None


def tracing_configured() -> bool:
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none" or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        exporters
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def sampler_from_env() -> Any:
    """The named sampler when `OTEL_TRACES_SAMPLER` is set (the SDK parses it), else
    parentbased_traceidratio with `OTEL_TRACES_SAMPLER_ARG` (default 1.0)."""
    from opentelemetry.sdk.trace.sampling import (
        ParentBased,
        TraceIdRatioBased,
        _get_from_env_or_default,
    )

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return _get_from_env_or_default()
    ratio = env_number("OTEL_TRACES_SAMPLER_ARG", 1.0, kind=float, maximum=1.0)
    return ParentBased(TraceIdRatioBased(ratio))


def _exporters_from_env() -> list[Any]:
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[Any] = []
    for name in filter(None, names):
        if name == "otlp":
            # http/protobuf (port 4318); reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout).
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    return exporters


def build_tracer_provider(*, exporters: list[Any] | None = None, sampler: Any = None) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from .logging import service_name

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name()}),
        sampler=sampler if sampler is not None else sampler_from_env(),
    )
    if exporters is None:
        for exporter in _exporters_from_env():
            # Batch: export off the request path; it re-creates its thread after a fork.
            provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        for exporter in exporters:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def instrument(*, tracer_provider: Any) -> None:
    """Install the instrumentations (idempotent). Call before the WSGI handler loads its
    middleware and before the first database connection (CoreConfig.ready does)."""
    if _instrumentors:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    DjangoInstrumentor().instrument(tracer_provider=tracer_provider, excluded_urls=excluded)
    PsycopgInstrumentor().instrument(tracer_provider=tracer_provider)
    RedisInstrumentor().instrument(tracer_provider=tracer_provider)
    CeleryInstrumentor().instrument(tracer_provider=tracer_provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=tracer_provider)
    _instrumentors.extend(
        [
            DjangoInstrumentor(),
            PsycopgInstrumentor(),
            RedisInstrumentor(),
            CeleryInstrumentor(),
            HTTPXClientInstrumentor(),
        ]
    )


def tracing_active() -> bool:
    return bool(_instrumentors)


def uninstrument() -> None:
    while _instrumentors:
        _instrumentors.pop().uninstrument()


def configure_from_env() -> bool:
    """Set the global tracer provider and instrument, when the environment asks for tracing."""
    global _provider
    if _provider is not None or not tracing_configured():
        return False
    from opentelemetry import trace

    _provider = build_tracer_provider()
    trace.set_tracer_provider(_provider)
    instrument(tracer_provider=_provider)
    from celery import signals

    # A prefork child exits without atexit: flush its queued spans first.
    signals.worker_process_shutdown.connect(_flush_on_exit, weak=False)
    return True


def _flush_on_exit(**_: Any) -> None:
    shutdown()


def shutdown() -> None:
    """Flush spans still queued (worker and gunicorn child exit)."""
    if _provider is not None:
        _provider.shutdown()
