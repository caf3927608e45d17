"""`manage.py load_demo_data`: clinics, services, two weeks of slots, users, pets, tokens."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from integrations.models import LocalPet, LocalUser
from petpro_booking.core.auth import issue_token
from petpro_booking.core.principal import SYSTEM
from slots.models import Clinic, ClinicService, ClinicStaff
from slots.services import WeeklyWindow, slot_generate


@dataclass(frozen=True)
class DemoService:
    id: str
    name: str
    minutes: int
    price: str
    requires_payment: bool
    species: list[str]
    cancellation_window_hours: int


@dataclass(frozen=True)
class DemoClinic:
    id: str
    name: str
    timezone: str
    services: list[DemoService]


CLINICS = [
    DemoClinic(
        id="c0a8e5a2-1d1f-4c35-9a0e-5b1e1c3b9a01",
        name="Berlin Mitte Animal Clinic",
        timezone="Europe/Berlin",
        services=[
            DemoService(
                "5e7b1a30-0001-4b8e-9d8d-000000000001",
                "General check-up",
                30,
                "45.00",
                False,
                ["dog", "cat", "rabbit"],
                24,
            ),
            DemoService(
                "5e7b1a30-0001-4b8e-9d8d-000000000002",
                "Vaccination",
                15,
                "30.00",
                True,
                ["dog", "cat"],
                12,
            ),
            DemoService(
                "5e7b1a30-0001-4b8e-9d8d-000000000003",
                "Dental cleaning",
                60,
                "120.00",
                True,
                ["dog", "cat"],
                48,
            ),
        ],
    ),
    DemoClinic(
        id="c0a8e5a2-1d1f-4c35-9a0e-5b1e1c3b9a02",
        name="Lisbon Riverside Vets",
        timezone="Europe/Lisbon",
        services=[
            DemoService(
                "5e7b1a30-0002-4b8e-9d8d-000000000001",
                "General check-up",
                30,
                "40.00",
                False,
                ["dog", "cat", "bird"],
                24,
            ),
            DemoService(
                "5e7b1a30-0002-4b8e-9d8d-000000000002", "Grooming", 45, "35.00", True, ["dog"], 6
            ),
        ],
    ),
]
OWNERS = [
    ("owner-anna", "Anna", [("pet-bello", "Bello", "dog"), ("pet-mimi", "Mimi", "cat")]),
    ("owner-joao", "João", [("pet-kiwi", "Kiwi", "bird")]),
]
WEEKLY = [WeeklyWindow(weekday=d, start=dt.time(9), end=dt.time(12)) for d in range(1, 6)] + [
    WeeklyWindow(weekday=d, start=dt.time(14), end=dt.time(17)) for d in (1, 3, 5)
]


class Command(BaseCommand):
    help = "Load demo clinics, services, two weeks of slots, users and pets; print tokens."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--quiet-tokens", action="store_true", help="do not print tokens")

    def handle(self, *args, **options) -> None:
        if getattr(settings, "PRODUCTION", False):
            # Demo users, known passwords and printed tokens have no place in production.
            raise CommandError("load_demo_data refuses to run under production settings.")
        created = 0
        with transaction.atomic():
            for spec in CLINICS:
                clinic, _ = Clinic.objects.update_or_create(
                    id=spec.id, defaults={"name": spec.name, "timezone": spec.timezone}
                )
                for service in spec.services:
                    ClinicService.objects.update_or_create(
                        id=service.id,
                        defaults={
                            "clinic": clinic,
                            "name": service.name,
                            "duration_minutes": service.minutes,
                            "price": Decimal(service.price),
                            "currency": "EUR",
                            "requires_payment": service.requires_payment,
                            "species": service.species,
                            "cancellation_window_hours": service.cancellation_window_hours,
                        },
                    )
            for owner_id, owner_name, pets in OWNERS:
                user, _ = LocalUser.objects.update_or_create(
                    id=owner_id,
                    defaults={
                        "name": owner_name,
                        "email": f"{owner_id}@example.com",
                        "channels": ["email", "push"],
                    },
                )
                for pet_id, pet_name, species in pets:
                    LocalPet.objects.update_or_create(
                        id=pet_id, defaults={"owner": user, "name": pet_name, "species": species}
                    )
            self._admin_users()

        for spec in CLINICS:
            today = timezone.now().astimezone(ZoneInfo(spec.timezone)).date()
            for service in spec.services:
                created += slot_generate(
                    actor=SYSTEM,
                    clinic_id=spec.id,
                    service_id=service.id,
                    date_from=today + dt.timedelta(days=1),
                    date_to=today + dt.timedelta(days=options["days"]),
                    weekly=WEEKLY,
                    capacity=2 if service.name == "General check-up" else 1,
                )
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded ({created} new slots)."))
        if not options["quiet_tokens"]:
            self._print_tokens()

    def _admin_users(self) -> None:
        """admin/admin (superuser, support), staff-berlin/staff-berlin (clinic staff)."""
        support, _ = Group.objects.get_or_create(name="support")
        if not User.objects.filter(username="admin").exists():
            admin = User.objects.create_superuser("admin", "admin@example.com", "admin")
            admin.groups.add(support)
        if not User.objects.filter(username="staff-berlin").exists():
            staff = User.objects.create_user("staff-berlin", password="staff-berlin")  # noqa: S106 - demo login
            staff.is_staff = True
            staff.save(update_fields=["is_staff"])
            ClinicStaff.objects.create(user=staff, clinic_id=CLINICS[0].id)

    def _print_tokens(self) -> None:
        berlin = CLINICS[0].id
        tokens = [
            ("pet owner Anna (pets pet-bello, pet-mimi)", "owner-anna", ["pet_owner"], []),
            ("pet owner João (pet pet-kiwi)", "owner-joao", ["pet_owner"], []),
            ("clinic staff of Berlin", "staff-berlin", ["clinic_staff"], [berlin]),
            ("support", "support-1", ["support"], []),
            ("another PetPro service (read only: GET)", "svc-notifications", ["service"], []),
        ]
        self.stdout.write("\nDemo tokens (valid 12 h; paste into /api/docs/ -> Authorize):")
        for label, sub, roles, clinics in tokens:
            token = issue_token(sub=sub, roles=roles, clinic_ids=clinics)
            self.stdout.write(f"\n# {label}\n{token}")
        self.stdout.write(
            "\nAdmin: http://127.0.0.1:8000/admin/ (admin/admin = support, "
            "staff-berlin/staff-berlin = Berlin clinic staff)\n"
            f"Try: curl -H 'Authorization: Bearer <token>' "
            f"'http://127.0.0.1:8000/api/v1/slots?clinic_id={berlin}&available=true'\n"
        )
