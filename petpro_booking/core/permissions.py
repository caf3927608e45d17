"""Provides the role-based permission policies of the API (docs/security.md)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .principal import Principal


def principal_of(request) -> Principal | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, Principal) else None


def request_principal(request) -> Principal:
    """The caller of an authenticated view (the permission classes guarantee there is one)."""
    principal = principal_of(request)
    if principal is None:
        raise exceptions.NotAuthenticated()
    return principal


class IsAuthenticatedPrincipal(BasePermission):
    message = "Authentication credentials were not provided."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if principal is None:
            return False
        if principal.is_service and request.method not in SAFE_METHODS:
            # Other services read through the API; they never act on slots or bookings.
            raise exceptions.PermissionDenied("Service tokens may only read.")
        return True


class IsPetOwner(BasePermission):
    message = "Only pet owners may do this."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        return principal is not None and principal.is_owner


class ReadOnlyOrStaff(BasePermission):
    """Anyone authenticated reads; only staff and support write (service tokens read only)."""

    message = "Only clinic staff and support may change this."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if principal is None:
            return False
        if request.method in SAFE_METHODS:
            return True
        return principal.is_clinic_staff or principal.is_support
