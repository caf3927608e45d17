"""Browser middleware that the JSON API skips, and the HTTP metrics of every request.

Requests under /api/v1/ authenticate with a bearer token, send and receive JSON and never carry
a session, a CSRF token, a Django user, flash messages or a page to frame. Sessions, CSRF, the
Django user, messages, X-Frame-Options, the CSP and the admin login lockout (axes) serve the
admin, the daily tool and the API docs page; on an API request they only cost time (about 5 %
of a hold's CPU, docs/benchmarks.md). Each class here is the library's middleware, a subclass
of it (so Django's admin checks still find it), that hands an API request straight on.
Everything else (/admin/, /api/docs/, /api/schema/, /healthz ...) goes through it unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from axes.middleware import AxesMiddleware
from csp.middleware import CSPMiddleware
from django.contrib.admin.views.main import ERROR_FLAG
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import ValidationError
from django.db import DataError
from django.http import HttpRequest, HttpResponseBase, HttpResponseForbidden, HttpResponseRedirect
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django_prometheus.middleware import Metrics

from .exception_handler import json_bad_request

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class _SkipsApi:
    """Mixed in before the library's middleware: an API request bypasses it, hooks included."""

    get_response: Any

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if is_api_request(request):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]

    def process_view(
        self,
        request: HttpRequest,
        callback: Callable[..., HttpResponseBase],
        callback_args: tuple[Any, ...],
        callback_kwargs: dict[str, Any],
    ) -> HttpResponseForbidden | None:
        hook = getattr(super(), "process_view", None)
        if hook is None or is_api_request(request):
            return None
        return hook(request, callback, callback_args, callback_kwargs)


class BrowserRefuseNulMiddleware:
    """Outside the API, a NUL in the path or the query string is a 400 before any view runs:
    PostgreSQL's text cannot hold one, and the admin's list filters, the daily tool's finder
    and its clinic path sent it on to a query (a DataError, a 500). Under /api/ the API refuses
    NUL on its own (ids are UUIDs: 404; DRF's CharField and the body parser: 400 naming the
    field; any other path: the JSON 404)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith("/api/") and (
            "\x00" in request.path_info or "%00" in request.META.get("QUERY_STRING", "")
        ):
            logger.warning("refused: NUL in the path or query string of %s", request.method)
            return json_bad_request(request, reason="No NUL character in the path or query.")
        return self.get_response(request)


class AdminChangelistGuardMiddleware:
    """An admin list page whose parameters Django cannot turn into a query goes back to the
    list with Django's "wrong parameters" flag (`?e=1`), as the changelist does for the
    parameters it checks itself, instead of a 500: a year past 9998 in a date lookup or a date
    drill-down (ValueError or OverflowError while Django builds the bounds, or while its date
    hierarchy renders the next year's link), a value PostgreSQL refuses (a DataError, e.g. a
    NUL in a posted action's selection), a selection that is no key of the model (Django's
    ValidationError, e.g. not a UUID). Every admin's list, the libraries' included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseRedirect | None:
        match = getattr(request, "resolver_match", None)
        if (
            match is None
            or match.namespace != "admin"
            or not (match.url_name or "").endswith("_changelist")
            or not isinstance(exception, ValueError | OverflowError | DataError | ValidationError)
        ):
            return None
        logger.warning(
            "admin list %s: parameters refused (%s: %s)",
            match.url_name,
            type(exception).__name__,
            exception,
        )
        return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")


class BrowserSessionMiddleware(_SkipsApi, SessionMiddleware):
    pass


class BrowserCsrfViewMiddleware(_SkipsApi, CsrfViewMiddleware):
    pass


class BrowserAuthenticationMiddleware(_SkipsApi, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_SkipsApi, MessageMiddleware):
    pass


class BrowserXFrameOptionsMiddleware(_SkipsApi, XFrameOptionsMiddleware):
    pass


class BrowserCSPMiddleware(_SkipsApi, CSPMiddleware):
    pass


class BrowserAxesMiddleware(_SkipsApi, AxesMiddleware):
    pass


# django-prometheus's method label: anything else is one label value, not one per invention.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"}
)


class HttpMetricsMiddleware:
    """The HTTP metrics the alerts and dashboards read (docs/operations.md, the chart's
    PrometheusRule), with django-prometheus's names, labels and buckets: responses by status,
    route and method, and latency by route and method, measured around the whole middleware
    chain. First in MIDDLEWARE.

    In place of django-prometheus's Before/After pair, which records about fifteen samples a
    request (by method, by transport, body sizes, charsets, latency twice ...): each is a write
    to the multiprocess files under gunicorn, and the pair cost 5 % of a hold's instructions
    (docs/benchmarks.md). Exceptions a view lets out are counted by type and route, as there."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.metrics = Metrics.get_instance()  # django-prometheus's metrics, registered once

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "<invalid method>"
        view = _view_name(request)
        self.metrics.responses_by_status_view_method.labels(
            status=str(response.status_code), view=view, method=method
        ).inc()
        self.metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(
            time.perf_counter() - started
        )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        self.metrics.exceptions_by_type.labels(type=type(exception).__name__).inc()
        self.metrics.exceptions_by_view.labels(view=_view_name(request)).inc()


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.view_name if match is not None else None) or "<unnamed view>"
