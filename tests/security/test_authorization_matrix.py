"""Authorization matrix (issue 12, point 9): every operation of the schema x every role, on
objects owned by someone else, with the exact status the API contract gives: 404 for others' owned
objects, 403 for a role that may not act, 401 without a token. Service tokens read but never
create or change slots (docs/security.md)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from bookings.services import booking_confirm_reservation
from petpro_booking.core.principal import Principal
from reservations.services import reservation_create, reservation_create_group

from ..conftest import api_client_for
from ..factories import LocalPetFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)  # holds and bookings commit for real

OWNER = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
ROLES = {
    "other_owner": {"sub": "owner-2", "roles": ["pet_owner"]},
    "staff": {"sub": "staff-1", "roles": ["clinic_staff"], "clinic_ids": ["clinic-berlin"]},
    "other_staff": {"sub": "staff-9", "roles": ["clinic_staff"], "clinic_ids": ["elsewhere"]},
    "support": {"sub": "support-1", "roles": ["support"]},
    "service": {"sub": "booking-service", "roles": ["service"]},
    "none": None,
}
O, S, X, P, V, N = "other_owner", "staff", "other_staff", "support", "service", "none"  # noqa: E741


def expect(other_owner, staff, other_staff, support, service, none=401) -> dict[str, int]:
    return {O: other_owner, S: staff, X: other_staff, P: support, V: service, N: none}


READ = expect(200, 200, 200, 200, 200)
# A waiting-list entry nobody of these roles owns.
NO_ENTRY = "00000000-0000-4000-8000-000000000001"
# operation -> (method, path, body, expected status per role). {slot}, {free}, {hold} and
# {booking} are owner-1's (or clinic-berlin's) objects, made fresh for every call.
MATRIX = {
    "list clinics": ("GET", "/api/v1/clinics", None, READ),
    "get clinic": ("GET", "/api/v1/clinics/clinic-berlin", None, READ),
    "clinic services": ("GET", "/api/v1/clinics/clinic-berlin/services", None, READ),
    "search slots": ("GET", "/api/v1/slots?clinic_id=clinic-berlin", None, READ),
    "get slot": ("GET", "/api/v1/slots/{slot}", None, READ),
    "create slot": (
        "POST",
        "/api/v1/slots",
        {
            "clinic_id": "clinic-berlin",
            "service_id": "svc-checkup",
            "start_at": "{later}",
            "end_at": "{later_end}",
        },
        expect(403, 201, 403, 201, 403),
    ),
    "generate slots": (
        "POST",
        "/api/v1/slots/generate",
        {
            "clinic_id": "clinic-berlin",
            "service_id": "svc-checkup",
            "date_from": "2031-03-03",
            "date_to": "2031-03-03",
            "weekly": [{"weekday": 1, "start": "09:00", "end": "10:00"}],
        },
        expect(403, 201, 403, 201, 403),
    ),
    "change slot": (
        "PATCH",
        "/api/v1/slots/{free}",
        {"capacity": 3},
        expect(403, 200, 403, 200, 403),
    ),
    "hold": (
        "POST",
        "/api/v1/reservations",
        {"slot_id": "{free}", "pet_id": "pet-1"},  # owner-1's pet
        expect(400, 403, 403, 403, 403),
    ),
    "hold a pet group": (
        "POST",
        "/api/v1/reservations",
        {"slot_id": "{free}", "pet_ids": ["pet-1"]},  # owner-1's pet
        expect(400, 403, 403, 403, 403),
    ),
    "get hold": ("GET", "/api/v1/reservations/{hold}", None, expect(404, 403, 403, 403, 403)),
    # A pet group's holds (issue 15) are their owner's: another owner gets 404.
    "get hold group": (
        "GET",
        "/api/v1/reservations/groups/{group}",
        None,
        expect(404, 403, 403, 403, 403),
    ),
    "release hold group": (
        "DELETE",
        "/api/v1/reservations/groups/{group}",
        None,
        expect(404, 403, 403, 403, 403),
    ),
    "release hold": (
        "DELETE",
        "/api/v1/reservations/{hold}",
        None,
        expect(404, 403, 403, 403, 403),
    ),
    "confirm hold": (
        "POST",
        "/api/v1/reservations/{hold}/confirm",
        {},
        expect(404, 403, 403, 403, 403),
    ),
    "list bookings": ("GET", "/api/v1/bookings", None, READ),
    "get booking": ("GET", "/api/v1/bookings/{booking}", None, expect(404, 200, 404, 200, 200)),
    "booking history": (
        "GET",
        "/api/v1/bookings/{booking}/history",
        None,
        expect(404, 200, 404, 200, 200),
    ),
    "my personal data": ("GET", "/api/v1/me/data", None, expect(200, 403, 403, 403, 403)),
    "list my holds": ("GET", "/api/v1/reservations", None, expect(200, 403, 403, 403, 403)),
    "get payment": (
        "GET",
        "/api/v1/bookings/{booking}/payment",
        None,
        expect(404, 404, 404, 404, 404),
    ),
    "pay booking": (
        "POST",
        "/api/v1/bookings/{booking}/payment",
        {},
        expect(404, 403, 403, 403, 403),
    ),
    "cancel booking": (
        "POST",
        "/api/v1/bookings/{booking}/cancel",
        {"reason": "the clinic is closed"},
        expect(404, 200, 404, 200, 403),
    ),
    "reschedule booking": (
        "POST",
        "/api/v1/bookings/{booking}/reschedule",
        {"slot_id": "{free}", "reason": "moved"},
        expect(404, 200, 404, 200, 403),
    ),
    "complete booking": (
        "POST",
        "/api/v1/bookings/{booking}/complete",
        {},
        expect(403, 200, 404, 200, 403),
    ),
    "no-show booking": (
        "POST",
        "/api/v1/bookings/{booking}/no-show",
        {},
        expect(403, 200, 404, 200, 403),
    ),
    "slot availability": ("GET", "/api/v1/slots/{slot}/availability", None, READ),
    # The waiting list is the pet owners' (issue 15): everyone else is 403.
    "join waitlist": (
        "POST",
        "/api/v1/waitlist",
        {"slot_id": "{slot}", "pet_id": "pet-1"},  # owner-1's pet
        expect(400, 403, 403, 403, 403),
    ),
    "list my waitlist": ("GET", "/api/v1/waitlist", None, expect(200, 403, 403, 403, 403)),
    "get waitlist entry": (
        "GET",
        f"/api/v1/waitlist/{NO_ENTRY}",
        None,
        expect(404, 403, 403, 403, 403),
    ),
    "leave waitlist": (
        "DELETE",
        f"/api/v1/waitlist/{NO_ENTRY}",
        None,
        expect(404, 403, 403, 403, 403),
    ),
    # Not bearer-authenticated: without the Payment Service's signature nobody gets in.
    "payment webhook": (
        "POST",
        "/api/v1/payments/webhook",
        {"event_id": "e1", "type": "payment.succeeded", "payment_id": "p", "amount": "1"},
        expect(401, 401, 401, 401, 401, 401),
    ),
}


# An owner's call on someone else's booking is a 404 whatever the action: it must not learn
# that the booking exists.
MATRIX["complete booking"][3][O] = MATRIX["no-show booking"][3][O] = 404
# Staff and support pass the authorization check; the visit rule (issue 14) then refuses to
# close a visit before its slot starts: 409 invalid_transition, not 403/404.
for _close in ("complete booking", "no-show booking"):
    MATRIX[_close][3][S] = MATRIX[_close][3][P] = 409


def test_the_matrix_covers_every_operation_of_the_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    documented = {
        (
            method.upper(),
            path.replace("{id}", "{x}")
            .replace("{reservation_id}", "{x}")
            .replace("{slot_id}", "{x}")
            .replace("{group_id}", "{x}"),
        )
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "patch", "delete", "put")
    }
    covered = set()
    for method, path, _, _ in MATRIX.values():
        path = path.split("?")[0].replace("clinic-berlin", "{x}").replace(NO_ENTRY, "{x}")
        for placeholder in ("{slot}", "{free}", "{hold}", "{booking}", "{group}"):
            path = path.replace(placeholder, "{x}")
        covered.add((method, path.replace("{booking_id}", "{x}")))
    documented = {(m, p.replace("{booking_id}", "{x}")) for m, p in documented}
    assert documented == covered


def _fill(value, objects):
    if isinstance(value, str):
        for name, replacement in objects.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, objects) for v in value]
    return value


@pytest.mark.parametrize("role", list(ROLES))
def test_authorization_matrix(role, clinic_service):
    LocalPetFactory(owner__id="owner-1", id="pet-1", species="dog")
    LocalPetFactory(owner__id="owner-2", id="pet-2", species="dog")
    client = api_client_for(**ROLES[role]) if ROLES[role] else api_client_for_none()
    start = timezone.now().replace(microsecond=0) + dt.timedelta(days=3)
    mismatches = []
    for index, (name, (method, path, body, expected)) in enumerate(MATRIX.items()):
        at = start + dt.timedelta(hours=index * 3)
        slot, free, other = (
            SlotFactory(service=clinic_service, start_at=at + dt.timedelta(minutes=m), capacity=2)
            for m in (0, 60, 120)
        )
        hold = reservation_create(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
        group = reservation_create_group(actor=OWNER, slot_id=slot.id, pet_ids=["pet-1"])
        booked = booking_confirm_reservation(
            actor=OWNER,
            reservation_id=reservation_create(actor=OWNER, slot_id=other.id, pet_id="pet-1").id,
        )
        objects = {
            "slot": str(slot.pk),
            "free": str(free.pk),
            "hold": str(hold.pk),
            "booking": str(booked.pk),
            "group": str(group[0].group_id),
            "later": (at + dt.timedelta(days=400)).isoformat(),
            "later_end": (at + dt.timedelta(days=400, minutes=30)).isoformat(),
        }
        response = client.generic(
            method,
            _fill(path, objects),
            **(
                {"data": __import__("json").dumps(_fill(body, objects))} if body is not None else {}
            ),
            content_type="application/json",
        )
        if response.status_code != expected[role]:
            mismatches.append((name, expected[role], response.status_code, response.content[:120]))
    assert mismatches == []


def api_client_for_none():
    from rest_framework.test import APIClient

    return APIClient()
