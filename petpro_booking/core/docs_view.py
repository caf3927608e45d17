"""The API docs page: Swagger UI for /api/schema/ (drf-spectacular's split view, whose init
script is a file: the CSP allows no inline script)."""

from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerSplitView


class DocsView(SpectacularSwaggerSplitView):
    """GET and HEAD only. DRF answers OPTIONS with the view's metadata rendered by its
    renderer, here an HTML template that does not exist (a 500)."""

    http_method_names = ["get", "head"]
