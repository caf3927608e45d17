"""django-axes' admin of login attempts, mended: its "Clean up expired attempts" action reads
`request.axes_attempt_time`, which only axes' login signal sets, so the action was a 500 on
every use (django-axes 8, `axes/attempts.py`). Registered again over axes' own (this app comes
after axes in INSTALLED_APPS, so its admin module is imported later)."""

from __future__ import annotations

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.http import HttpRequest


class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts")
    def cleanup_expired_attempts(self, request: HttpRequest, queryset) -> None:
        if not hasattr(request, "axes_attempt_time"):
            request.axes_attempt_time = None  # type: ignore[attr-defined]  # "now", as axes reads it
        super().cleanup_expired_attempts(request, queryset)


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
    admin.site.register(AccessAttempt, AccessAttemptAdmin)
