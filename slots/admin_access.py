"""Who an admin user is, as a Principal: support (group "support" or superuser) or the staff
of the clinics linked to them. Admin actions call services with it, like the API does."""

from __future__ import annotations

from typing import Any

from petpro_booking.core.principal import ROLE_CLINIC_STAFF, ROLE_SUPPORT, Principal

from .models import ClinicStaff

SUPPORT_GROUP = "support"


def admin_principal(user: Any) -> Principal | None:
    """The Principal of a logged-in admin user, or None when they may manage nothing."""
    if not user.is_authenticated or not user.is_active:
        return None
    sub = f"admin:{user.pk}"
    if user.is_superuser or user.groups.filter(name=SUPPORT_GROUP).exists():
        return Principal(sub=sub, roles=frozenset({ROLE_SUPPORT}))
    clinic_ids = frozenset(
        ClinicStaff.objects.filter(user_id=user.pk).values_list("clinic_id", flat=True)
    )
    if not clinic_ids:
        return None
    return Principal(sub=sub, roles=frozenset({ROLE_CLINIC_STAFF}), clinic_ids=clinic_ids)


def visible_clinic_ids(user: Any) -> frozenset[str] | None:
    """Clinic ids this admin user may see; None means all (support)."""
    principal = admin_principal(user)
    if principal is None:
        return frozenset()
    if principal.is_support:
        return None
    return principal.clinic_ids
