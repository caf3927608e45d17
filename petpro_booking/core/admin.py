"""The admin's login and django-axes' admin of login attempts, mended.

* Axes' "Clean up expired attempts" action reads `request.axes_attempt_time`, which only axes'
  login signal sets, so the action was a 500 on every use (django-axes 8, `axes/attempts.py`).
  Registered again over axes' own (this app comes after axes in INSTALLED_APPS, so its admin
  module is imported later).
* Django's login form sets the username's maximum length after the field is built, so nothing
  enforces it: a username of 256 characters reached axes, whose failed-attempt row holds 255,
  and the login page (no login needed) answered 500 on PostgreSQL. `AdminLoginForm` refuses a
  username longer than the user model's with the form's usual "wrong username or password".
"""

from __future__ import annotations

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest


class AdminLoginForm(AdminAuthenticationForm):
    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        longest = self.username_field.max_length or 254  # as Django's form reads it
        if username is not None and len(username) > longest:
            # No user has it; said as for any failed login (nothing told about accounts).
            raise self.get_invalid_login_error()
        return super().clean()


class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts")
    def cleanup_expired_attempts(self, request: HttpRequest, queryset) -> None:
        if not hasattr(request, "axes_attempt_time"):
            request.axes_attempt_time = None  # type: ignore[attr-defined]  # "now", as axes reads it
        super().cleanup_expired_attempts(request, queryset)


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
    admin.site.register(AccessAttempt, AccessAttemptAdmin)


admin.site.login_form = AdminLoginForm
