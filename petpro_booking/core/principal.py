"""The authenticated caller, as told by a verified JWT."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_PET_OWNER = "pet_owner"
ROLE_CLINIC_STAFF = "clinic_staff"
ROLE_SUPPORT = "support"
ROLE_SERVICE = "service"
ROLES = frozenset({ROLE_PET_OWNER, ROLE_CLINIC_STAFF, ROLE_SUPPORT, ROLE_SERVICE})


@dataclass(frozen=True)
class Principal:
    """Who is calling: `sub` is an opaque user id of the User Service."""

    sub: str
    roles: frozenset[str] = field(default_factory=frozenset)
    clinic_ids: frozenset[str] = field(default_factory=frozenset)

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> str:  # DRF's throttles and some libraries key on user.pk
        return self.sub

    @property
    def id(self) -> str:
        return self.sub

    @property
    def is_support(self) -> bool:
        return ROLE_SUPPORT in self.roles

    @property
    def is_service(self) -> bool:
        return ROLE_SERVICE in self.roles

    @property
    def is_owner(self) -> bool:
        return ROLE_PET_OWNER in self.roles

    @property
    def is_clinic_staff(self) -> bool:
        return ROLE_CLINIC_STAFF in self.roles

    def can_manage_clinic(self, clinic_id: str) -> bool:
        """Staff of that clinic, support and services may change its slots and bookings."""
        return (
            self.is_support
            or self.is_service
            or (self.is_clinic_staff and str(clinic_id) in self.clinic_ids)
        )

    def as_owner(self) -> Principal:
        """This caller acting on its own pet's hold, booking or place in line (hold, confirm,
        release, join or leave the line): as an owner, so that history and events say "user"
        even when the token also has the staff or support role."""
        if not self.is_owner or self.roles == {ROLE_PET_OWNER}:
            return self
        return Principal(sub=self.sub, roles=frozenset({ROLE_PET_OWNER}))

    def at_clinic(self, clinic_id: str) -> Principal:
        """This caller as it acts on a booking of `clinic_id`. A token with the owner role and
        the staff role of other clinics (staff with a pet of their own) acts there as an owner
        only: the owner's rules apply and history and events say "user"."""
        if self.can_manage_clinic(clinic_id):
            return self
        return self.as_owner()

    @property
    def actor(self) -> dict[str, str]:
        """How this caller is written into history and event metadata."""
        if self.is_support:
            kind = "support"
        elif self.is_clinic_staff:
            kind = "staff"
        elif self.is_service:
            kind = "system"
        else:
            kind = "user"
        return {"type": kind, "id": self.sub}


SYSTEM = Principal(sub="booking-service", roles=frozenset({ROLE_SERVICE}))
