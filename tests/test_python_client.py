"""`make client`: the typed Python client generated from the published OpenAPI schema books a
visit end to end against the running test server, so the schema cannot drift from the API (a
missing or renamed field fails the client's parsing; a wrong status comes back as an error)."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path

import pytest

from petpro_booking.core.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients"))
from build import client_build  # noqa: E402  (clients/build.py, what `make client` runs)


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    output = tmp_path_factory.mktemp("client") / "python"
    package = client_build(output)
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module("petpro_booking_client")
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n.startswith("petpro_booking_client")]:
            del sys.modules[name]


@pytest.mark.django_db(transaction=True)
def test_one_booking_end_to_end_through_the_generated_client(
    client_package, live_server, owner_pet, slot
):
    from petpro_booking_client.api.bookings import bookings_list, bookings_retrieve
    from petpro_booking_client.api.reservations import (
        reservations_confirm_create,
        reservations_create,
        reservations_list,
    )
    from petpro_booking_client.api.slots import slots_list
    from petpro_booking_client.models import (
        BookingOutput,
        BookingStatusEnum,
        ErrorEnvelope,
        ReservationCreateInputRequest,
        ReservationStatusEnum,
    )

    token = issue_token(sub="owner-1", roles=["pet_owner"])
    client = client_package.AuthenticatedClient(base_url=live_server.url, token=token)

    found = slots_list.sync(client=client, available=True, clinic_id=slot.clinic_id)
    assert [s.id for s in found.results] == [slot.id]
    assert found.results[0].timezone == "Europe/Berlin"

    hold = reservations_create.sync(
        client=client,
        body=ReservationCreateInputRequest(slot_id=found.results[0].id, pet_id="pet-1"),
        idempotency_key=str(uuid.uuid4()),
    )
    assert hold.status == ReservationStatusEnum.HELD
    assert [r.id for r in reservations_list.sync(client=client).results] == [hold.id]

    booking = reservations_confirm_create.sync(reservation_id=hold.id, client=client)
    assert isinstance(booking, BookingOutput)
    assert booking.status == BookingStatusEnum.CONFIRMED
    assert booking.start_at == slot.start_at
    assert booking.clinic_name == slot.clinic.name

    by_reference = bookings_list.sync(client=client, reference=booking.reference)
    assert [b.id for b in by_reference.results] == [booking.id]
    assert bookings_retrieve.sync(id=booking.id, client=client).version == booking.version

    again = reservations_confirm_create.sync(reservation_id=hold.id, client=client)
    assert isinstance(again, ErrorEnvelope)
    assert again.error.code == "invalid_transition"
    assert again.error.details["reference"] == booking.reference
