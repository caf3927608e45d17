"""Who an admin user is, as a Principal, and the admin base every clinic-scoped admin uses.

Support is the group "support" (or a superuser); clinic staff are the users the slots app
links to clinics (it registers that lookup with `on_staff_clinics`, so core knows no app).
Admin actions call services with this principal, like the API does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from .principal import ROLE_CLINIC_STAFF, ROLE_SUPPORT, Principal

SUPPORT_GROUP = "support"
# An admin action changes its rows one by one, each in its own transaction as the API would
# (about 14 ms a slot): 500 stay far inside the web worker's timeout. A "select all" of a
# clinic's 3,000 slots ran into it, and the worker was killed halfway with nothing said.
ACTION_MAX_ROWS = 500
_staff_clinics: list[Callable[[Any], Iterable[str]]] = []


def on_staff_clinics(lookup: Callable[[Any], Iterable[str]]) -> None:
    """Register `lookup(user_pk)` -> the clinic ids a Django user is staff of (AppConfig.ready
    of the app that owns that link)."""
    _staff_clinics[:] = [lookup]


def admin_principal(user: Any) -> Principal | None:
    """The Principal of a logged-in admin user, or None when they may manage nothing."""
    if not user.is_authenticated or not user.is_active:
        return None
    sub = f"admin:{user.pk}"
    if user.is_superuser or user.groups.filter(name=SUPPORT_GROUP).exists():
        return Principal(sub=sub, roles=frozenset({ROLE_SUPPORT}))
    clinic_ids = frozenset(clinic_id for lookup in _staff_clinics for clinic_id in lookup(user.pk))
    if not clinic_ids:
        return None
    return Principal(sub=sub, roles=frozenset({ROLE_CLINIC_STAFF}), clinic_ids=clinic_ids)


def support_principal(user: Any) -> Principal | None:
    """The principal of a support admin user; None for anyone else (staff included)."""
    principal = admin_principal(user)
    return principal if principal is not None and principal.is_support else None


def visible_clinic_ids(user: Any) -> frozenset[str] | None:
    """Clinic ids this admin user may see; None means all (support)."""
    principal = admin_principal(user)
    if principal is None:
        return frozenset()
    if principal.is_support:
        return None
    return principal.clinic_ids


class NoFormsAdmin:
    """An admin whose rows change only through its actions (services) or another part of the
    product: no add, edit or delete form, for anyone."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class SupportOnlyAdmin(admin.ModelAdmin):
    """Rows that belong to no clinic (an owner's limits, a person's erasure): support only;
    clinic staff do not see the model at all."""

    def _is_support(self, request: HttpRequest) -> bool:
        return support_principal(request.user) is not None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_support(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._is_support(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._is_support(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._is_support(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._is_support(request)


class ClinicScopedAdmin(admin.ModelAdmin):
    """Clinic staff see only rows of their clinics; support sees all."""

    clinic_field = "clinic_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        clinic_ids = visible_clinic_ids(request.user)
        if clinic_ids is None:
            return queryset
        return queryset.filter(**{f"{self.clinic_field}__in": clinic_ids})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return admin_principal(request.user) is not None

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return admin_principal(request.user) is not None

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        principal = admin_principal(request.user)
        if principal is None:
            return False
        return obj is None or principal.can_manage_clinic(getattr(obj, self.clinic_field))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return admin_principal(request.user) is not None

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # history matters: close slots, cancel bookings, don't delete them

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and "id" not in readonly:
            readonly.append("id")  # a changed primary key would save over another row
        return readonly

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        """Choices of a clinic, or of anything that belongs to a clinic (a service, a slot):
        only those of the clinics this user manages."""
        clinic_ids = visible_clinic_ids(request.user)
        related = db_field.related_model
        if clinic_ids is not None and related is not None:
            if db_field.name == "clinic":
                kwargs["queryset"] = related._default_manager.filter(id__in=clinic_ids)
            elif any(field.attname == "clinic_id" for field in related._meta.concrete_fields):
                kwargs["queryset"] = related._default_manager.filter(clinic_id__in=clinic_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request: HttpRequest, obj=None, change=False, **kwargs):
        """The form checks the principal may manage the clinic it names, so a refused save is
        a form error (nothing saved, nothing logged), not a success message."""
        form_class = super().get_form(request, obj, change=change, **kwargs)
        principal = admin_principal(request.user)
        clinic_field = self.clinic_field.removesuffix("_id")
        if clinic_field == "id":
            return form_class

        class ScopedForm(form_class):  # type: ignore[valid-type, misc]
            def clean(self):
                cleaned = super().clean()
                clinic = cleaned.get(clinic_field)
                clinic_id = getattr(clinic, "pk", clinic)
                if clinic_id and (principal is None or not principal.can_manage_clinic(clinic_id)):
                    raise ValidationError("You may not manage this clinic.")
                return cleaned

        return ScopedForm


def selection_too_large(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    rows: QuerySet,
    what: str,
    maximum: int | None = None,
) -> bool:
    """True, with a message saying how to go on, when an action would work on more than
    `maximum` (ACTION_MAX_ROWS) `rows`; it then changes none."""
    maximum = ACTION_MAX_ROWS if maximum is None else maximum
    count = rows.count()
    if count <= maximum:
        return False
    model_admin.message_user(
        request,
        f"{count} {what} selected; an action changes at most {maximum} at a time. "
        "Nothing was changed: narrow the list (by date or clinic) and run it again.",
        messages.ERROR,
    )
    return True
