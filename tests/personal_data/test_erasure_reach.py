"""Right to erasure, where a person's data hides: numeric ids (replaced as whole values only,
never inside times, amounts or other ids), staff's idempotency records of their bookings, a
pet only on a waiting list, support's fair-use override of them; and the export of the same."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from bookings.models import Booking, PaymentRecord, PersonErasure
from bookings.personal_data import ERASED, Replacements, person_data_export, person_erase, scrub
from petpro_booking.core.models import IdempotencyKey
from petpro_booking.core.principal import Principal
from petpro_booking.events.models import Event
from reservations.models import OwnerLimit
from reservations.services import reservation_create, reservation_release
from waitlist.models import WaitlistEntry
from waitlist.services import waitlist_join

from ..bookings.conftest import OWNER, SUPPORT, book_on, let_slot_start, other_pet  # noqa: F401
from ..conftest import api_client_for
from ..factories import LocalPetFactory, PaymentRecordFactory, SlotFactory

pytestmark = pytest.mark.django_db(transaction=True)

BYSTANDER = Principal(sub="owner-2", roles=frozenset({"pet_owner"}))


# --- scrub: whole values, by key --------------------------------------------------------------


def test_scrub_replaces_ids_as_whole_values_and_never_inside_other_values():
    erase = Replacements(user={"2026": "erased-x"}, pets={"12": "erased-x-p1"}, names={"Rex"})
    payload = {
        "user_id": "2026",
        "pet_id": "12",
        "pet_ids": ["12", "13"],
        "actor": {"type": "user", "id": "2026"},
        "customer_id": 2026,  # a provider's number
        "start_at": "2026-12-10T02:00:00+00:00",
        "amount": "2026.12",
        "reservation_id": "12202612-2026-4026-8026-202620262026",
        "capacity": 12,
        "description": "Check-up for Rex, Rexona's brother",
        "pet_name": "Rex",
    }
    assert scrub(payload, erase) == {
        "user_id": "erased-x",
        "pet_id": "erased-x-p1",
        "pet_ids": ["erased-x-p1", "13"],
        "actor": {"type": "user", "id": "erased-x"},
        "customer_id": "erased-x",
        "start_at": "2026-12-10T02:00:00+00:00",
        "amount": "2026.12",
        "reservation_id": "12202612-2026-4026-8026-202620262026",
        "capacity": 12,
        "description": f"Check-up for {ERASED}, Rexona's brother",
        "pet_name": ERASED,
    }


def test_scrub_leaves_a_bystanders_pet_whose_id_is_the_owners_id():
    """User and pet ids come from different counters of the User Service: under `pet_id`
    only the person's pets are theirs."""
    erase = Replacements(user={"7": "erased-x"}, pets={"3": "erased-x-p1"}, names=set())
    bodies = [{"user_id": "7", "pet_id": "3"}, {"user_id": "9", "pet_id": "7"}]
    assert scrub(bodies, erase) == [
        {"user_id": "erased-x", "pet_id": "erased-x-p1"},
        {"user_id": "9", "pet_id": "7"},
    ]


def test_a_name_of_digits_is_replaced_only_as_a_whole_value():
    erase = Replacements(user={}, pets={}, names={"2026"})
    assert scrub({"a": "2026", "b": "2026-12-10"}, erase) == {"a": ERASED, "b": "2026-12-10"}


# --- the erasure, end to end -------------------------------------------------------------------


def test_numeric_ids_are_erased_without_changing_times_amounts_or_ids(slot):
    """Owner 2026 with pet 12: the old scrub replaced "2026" inside every string, turning
    "2026-12-10T02:00:00+00:00" into "erased-…-12-10T…" in events and payment records."""
    LocalPetFactory(id="12", name="Rex", owner__id="2026", species="dog")
    owner = Principal(sub="2026", roles=frozenset({"pet_owner"}))
    booking = book_on(slot, owner=owner, pet_id="12")
    let_slot_start(slot)  # a past visit: kept, pseudonymised
    PaymentRecordFactory(
        booking=booking,
        payment_id="pay_2026_12",
        status="succeeded",
        last_payload={
            "customer_id": 2026,
            "amount": "2026.12",
            "created": "2026-12-10T02:00:00Z",
            "description": "Check-up for Rex",
        },
    )
    personal = {"user_id", "pet_id", "pet_name", "reason"}
    events = Event.objects.filter(aggregate_id__in=[str(booking.id), str(booking.reservation_id)])

    def kept(event: Event) -> dict:
        return {k: v for k, v in event.payload.items() if k not in personal}

    before = {e.id: (kept(e), e.payload["user_id"], e.payload["pet_id"]) for e in events}
    assert len(before) >= 3

    audit = person_erase(actor=SUPPORT, user_id="2026")

    for event in events.all():
        assert kept(event) == before[event.id][0]  # times, amounts, uuids, names of clinics
        assert event.payload["user_id"] == audit.pseudonym
        assert event.payload["pet_id"] == f"{audit.pseudonym}-p1"
    erased = Booking.objects.get(id=booking.id)
    assert (erased.user_id, erased.pet_id) == (audit.pseudonym, f"{audit.pseudonym}-p1")
    assert PaymentRecord.objects.get(payment_id="pay_2026_12").last_payload == {
        "customer_id": audit.pseudonym,
        "amount": "2026.12",
        "created": "2026-12-10T02:00:00Z",
        "description": f"Check-up for {ERASED}",
    }


def test_staffs_idempotency_record_of_the_persons_booking_is_scrubbed_and_still_replays(
    owner_pet, slot, clinic
):
    booking = book_on(slot)
    staff = api_client_for(sub="staff-1", roles=["clinic_staff"], clinic_ids=[clinic.id])

    def cancel():
        return staff.post(
            f"/api/v1/bookings/{booking.id}/cancel",
            {"reason": "vet ill"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="staff-cancel-1",
        )

    first = cancel()
    assert first.status_code == 200, first.content
    assert IdempotencyKey.objects.get(principal="staff-1").response_body["user_id"] == "owner-1"

    audit = person_erase(actor=SUPPORT, user_id="owner-1")

    record = IdempotencyKey.objects.get(principal="staff-1")  # staff's record stays staff's
    text = json.dumps(record.response_body)
    for value in ("owner-1", '"pet-1"', owner_pet.name):
        assert value not in text, value
    assert record.response_body["user_id"] == audit.pseudonym
    assert audit.counts["idempotency_records"] == 1
    # Staff's retry within the day gets the first answer (pseudonymised), nothing runs again.
    replay = cancel()
    assert replay.status_code == 200
    assert replay.json()["user_id"] == audit.pseudonym
    assert replay.json()["status"] == "cancelled"


def test_a_record_of_someone_else_whose_pet_has_the_persons_number_is_left_alone(slot):
    """Owner 7 is erased; owner 9's pet is also numbered 7 (the User Service counts pets and
    people apart): owner 9's stored answer is not the person's and stays as it was."""
    LocalPetFactory(id="12", owner__id="7", species="dog")
    book_on(slot, owner=Principal(sub="7", roles=frozenset({"pet_owner"})), pet_id="12")
    theirs = {"user_id": "9", "pet_id": "7", "start_at": "2026-12-07T10:00:00+00:00"}
    IdempotencyKey.objects.create(
        key="k",
        principal="9",
        method="POST",
        path="/api/v1/reservations",
        request_hash="x",
        response_status=201,
        response_body=theirs,
    )
    audit = person_erase(actor=SUPPORT, user_id="7")
    assert IdempotencyKey.objects.get(principal="9").response_body == theirs
    assert audit.counts["idempotency_records"] == 0


def test_a_pet_only_on_the_waiting_list_leaves_no_real_id_in_events(owner_pet, slot, other_pet):  # noqa: F811
    LocalPetFactory(id="pet-9", owner=owner_pet.owner, species="dog", name="Shadow")
    reservation_create(actor=BYSTANDER, slot_id=slot.id, pet_id="pet-2")  # the slot is full
    waitlist_join(actor=OWNER, slot_id=slot.id, pet_id="pet-9")

    audit = person_erase(actor=SUPPORT, user_id="owner-1")

    everything = json.dumps([[e.payload, e.metadata] for e in Event.objects.all()])
    assert '"pet-9"' not in everything
    assert "Shadow" not in everything
    assert "owner-1" not in everything
    (entry,) = WaitlistEntry.objects.all()
    joined = Event.objects.get(event_type="WaitlistJoined")
    # The entry and its events name the pet by the same pseudonym.
    assert entry.pet_id == joined.payload["pet_id"]
    assert entry.pet_id.startswith(audit.pseudonym)


def test_supports_fair_use_override_is_exported_then_erased(client, owner_pet, slot):
    book_on(slot)
    limit = OwnerLimit.objects.create(
        user_id="owner-1", max_live_holds=10, reason="Biscuit's owner runs a breeding kennel"
    )
    agent = User.objects.create_superuser("agent", "agent@example.com", "pw")
    LogEntry.objects.create(
        user=agent,
        content_type=ContentType.objects.get_for_model(OwnerLimit),
        object_id=str(limit.pk),
        object_repr=str(limit),
        action_flag=ADDITION,
        change_message="[]",
    )
    (exported,) = person_data_export(user_id="owner-1")["owner_limits"]
    assert exported["max_live_holds"] == 10
    assert exported["reason"] == "Biscuit's owner runs a breeding kennel"

    audit = person_erase(actor=SUPPORT, user_id="owner-1")

    assert not OwnerLimit.objects.exists()
    assert audit.counts["owner_limits"] == 1
    assert LogEntry.objects.get().object_repr == audit.pseudonym
    assert person_data_export(user_id="owner-1")["owner_limits"] == []


def offer_the_slot_to_the_owner(slot) -> None:
    """A bystander's hold released while owner-1 waits: the unit is offered to owner-1."""
    hold = reservation_create(actor=BYSTANDER, slot_id=slot.id, pet_id="pet-2")
    waitlist_join(actor=OWNER, slot_id=slot.id, pet_id="pet-1")
    reservation_release(actor=BYSTANDER, reservation_id=hold.id)


def test_the_export_has_waiting_list_offers_and_what_the_payment_provider_said(
    owner_pet,
    slot,
    other_pet,  # noqa: F811
):
    offer_the_slot_to_the_owner(slot)
    offer = Event.objects.get(event_type="WaitlistOffered")
    Event.objects.update(published_at=timezone.now())  # as if the relay had sent them all
    later = SlotFactory(
        clinic=slot.clinic,
        service=slot.service,
        start_at=slot.start_at + dt.timedelta(hours=3),
        end_at=slot.end_at + dt.timedelta(hours=3),
    )
    booking = book_on(later)
    PaymentRecordFactory(
        booking=booking,
        payment_id="pay_1",
        status="pending",
        checkout_url="https://pay.example/checkout/cs_1",
        last_payload={"customer_id": "owner-1", "status": "pending"},
    )

    document = person_data_export(user_id="owner-1")

    offers = [n for n in document["notifications"] if n["template"] == "waitlist_offer"]
    assert [n["event_id"] for n in offers] == [str(offer.event_id)]
    (payment,) = document["payments"]
    assert payment["checkout_url"] == "https://pay.example/checkout/cs_1"
    assert payment["last_payload"] == {"customer_id": "owner-1", "status": "pending"}
    assert "owner_limits" in document
    assert not PersonErasure.objects.exists()


def test_the_export_names_a_withdrawn_offer_and_leaves_out_what_notified_no_one(
    owner_pet,
    slot,
    other_pet,  # noqa: F811
):
    from bookings.services import booking_cancel_slot_visits

    from ..bookings.conftest import staff_of

    offer_the_slot_to_the_owner(slot)
    booking_cancel_slot_visits(actor=staff_of(slot.clinic_id), slot_id=slot.id, reason="ill")
    Event.objects.update(published_at=timezone.now())  # as if the relay had sent them all
    # An offer that lapsed notifies no one by its entry's event (its hold's expiry does).
    lapsed = Event.objects.get(event_type="WaitlistOfferExpired")
    Event.objects.create(
        event_id=uuid.uuid4(),
        aggregate_type=lapsed.aggregate_type,
        aggregate_id=lapsed.aggregate_id,
        aggregate_version=lapsed.aggregate_version + 10,
        event_type="WaitlistOfferExpired",
        payload={**lapsed.payload, "reason": ""},
        metadata=lapsed.metadata,
        published_at=timezone.now(),
    )

    document = person_data_export(user_id="owner-1")

    templates = [n["template"] for n in document["notifications"]]
    assert templates == ["waitlist_offer", "waitlist_offer_withdrawn"]
