"""factory_boy factories for the models the tests need."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.utils import timezone

from bookings.models import PaymentRecord
from integrations.models import LocalPet, LocalUser
from slots.models import Clinic, ClinicService, Slot


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"clinic-{n}")
    name = factory.Sequence(lambda n: f"Clinic {n}")
    timezone = "Europe/Berlin"
    active = True


class ClinicServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClinicService
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"service-{n}")
    clinic = factory.SubFactory(ClinicFactory)
    name = factory.Sequence(lambda n: f"Service {n}")
    duration_minutes = 30
    price = Decimal("45.00")
    currency = "EUR"
    species = factory.LazyFunction(lambda: ["dog", "cat"])
    requires_payment = False
    cancellation_window_hours = 24


class SlotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Slot

    service = factory.SubFactory(ClinicServiceFactory)
    clinic = factory.SelfAttribute("service.clinic")
    start_at = factory.Sequence(
        lambda n: (
            (timezone.now() + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
            + dt.timedelta(minutes=30 * n)
        )
    )
    end_at = factory.LazyAttribute(lambda o: o.start_at + dt.timedelta(minutes=30))
    capacity = 1


class LocalUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LocalUser
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"user-{n}")
    name = factory.Sequence(lambda n: f"Owner {n}")
    email = factory.LazyAttribute(lambda o: f"{o.id}@example.com")
    channels = factory.LazyFunction(lambda: ["email", "push"])


class LocalPetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LocalPet
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"pet-{n}")
    owner = factory.SubFactory(LocalUserFactory)
    name = factory.Sequence(lambda n: f"Rex {n}")
    species = "dog"


class PaymentRecordFactory(factory.django.DjangoModelFactory):
    """A payment of `booking` (required: bookings are made through the services), for its
    amount and currency unless given."""

    class Meta:
        model = PaymentRecord

    payment_id = factory.Sequence(lambda n: f"pay-{n}")
    idempotency_key = factory.Sequence(lambda n: f"idem-{n}")
    amount = factory.LazyAttribute(lambda o: o.booking.amount)
    currency = factory.LazyAttribute(lambda o: o.booking.currency)
