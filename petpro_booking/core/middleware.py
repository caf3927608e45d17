"""Browser middleware that the JSON API skips.

Requests under /api/v1/ authenticate with a bearer token, send and receive JSON and never carry
a session, a CSRF token, a Django user, flash messages or a page to frame. Sessions, CSRF, the
Django user, messages, X-Frame-Options, the CSP and the admin login lockout (axes) serve the
admin, the daily tool and the API docs page; on an API request they only cost time (about 5 %
of a hold's CPU, docs/benchmarks.md). Each class here is the library's middleware, a subclass
of it (so Django's admin checks still find it), that hands an API request straight on.
Everything else (/admin/, /api/docs/, /api/schema/, /healthz ...) goes through it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axes.middleware import AxesMiddleware
from csp.middleware import CSPMiddleware
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBase, HttpResponseForbidden
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware

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
