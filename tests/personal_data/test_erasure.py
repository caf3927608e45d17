"""Right to erasure: after `manage.py erase_person`, no personal value of the person is left in
any table, the cache or the outbox; counters still match the rows; the export is empty; the
analytics consumers get PersonErased; an audit row says who did it."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django_redis import get_redis_connection

from bookings.models import Booking, BookingHistory, ErasureRequest, PersonErasure
from bookings.personal_data import person_data_export
from integrations.models import LocalPet, LocalUser
from petpro_booking.core.crypto import owner_key
from petpro_booking.events.models import Event
from petpro_booking.events.relay import outbox_relay
from reservations.models import Reservation
from slots.models import Slot
from waitlist.models import WaitlistEntry

from ..conftest import api_client_for
from ..events.conftest import broker_tap, private_exchange  # noqa: F401  (fixtures)
from .conftest import PERSONAL_VALUES

pytestmark = pytest.mark.django_db(transaction=True)


def every_row_as_text() -> str:
    """Each row of each table of our schema, as PostgreSQL prints it, plus the decrypted
    encrypted columns (ciphertext would hide a value the ORM still returns)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [settings.DB_SCHEMA],
        )
        tables = [row[0] for row in cursor.fetchall()]
        text = []
        for table in tables:
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608
            text.extend(row[0] for row in cursor.fetchall())
    text += [r.pet_name for r in Reservation.objects.all()]
    text += [f"{w.pet_name} {w.end_reason}" for w in WaitlistEntry.objects.all()]
    text += [h.reason for h in BookingHistory.objects.all()]
    text += [f"{u.name} {u.email} {u.phone}" for u in LocalUser.objects.all()]
    text += [p.name for p in LocalPet.objects.all()]
    assert len(tables) >= 10
    return "\n".join(text)


def cache_as_bytes() -> bytes:
    redis = get_redis_connection("default")
    chunks = []
    for key in redis.scan_iter(count=1000):
        chunks.append(key)
        if redis.type(key) == b"string":
            chunks.append(redis.get(key) or b"")
    return b"\n".join(chunks)


def assert_counters_match_rows() -> None:
    for slot in Slot.objects.all():
        booked = Booking.objects.filter(
            slot=slot, status__in=["pending_payment", "confirmed", "completed", "no_show"]
        ).count()
        held = Reservation.objects.filter(slot=slot, status="held").count()
        assert (slot.booked_count, slot.held_count) == (booked, held), slot
        assert slot.booked_count + slot.held_count <= slot.capacity


def test_erasure_leaves_nothing_personal_and_keeps_the_numbers(person, broker_tap):  # noqa: F811
    before = every_row_as_text()
    assert all(value in before for value in PERSONAL_VALUES)  # the scan would see them
    assert b"owner-1" in cache_as_bytes()
    amounts = sorted(str(b.amount) for b in Booking.objects.filter(user_id="owner-1"))

    call_command("erase_person", "owner-1", "--by", "agent-7", stdout=open("/dev/null", "w"))  # noqa: SIM115

    # Future bookings were cancelled through the service, past ones kept their status.
    statuses = {
        name: Booking.objects.get(id=booking.id).status for name, booking in person.bookings.items()
    }
    assert statuses == {
        "confirmed": "cancelled",
        "pending_payment": "cancelled",
        "cancelled": "cancelled",
        "completed": "completed",
        "no_show": "no_show",
    }
    assert Reservation.objects.get(id=person.live_hold.id).status == "released"
    assert_counters_match_rows()
    pseudonymised = Booking.objects.exclude(id=person.bystander_booking.id)
    assert sorted(str(b.amount) for b in pseudonymised) == amounts
    assert len({b.user_id for b in pseudonymised}) == 1
    # The bystander keeps everything.
    assert Booking.objects.get(id=person.bystander_booking.id).user_id == "owner-2"
    assert LocalPet.objects.get(id="pet-2").name == "Nala"

    # Publish everything, PersonErased included: every message passes its schema.
    report = outbox_relay()
    assert report.failed == 0
    assert report.invalid_messages == 0
    after = every_row_as_text()
    for value in PERSONAL_VALUES:
        assert value not in after, value
    cached = cache_as_bytes()
    for value in PERSONAL_VALUES:
        assert value.encode() not in cached, value
    messages = broker_tap.drain()
    assert messages
    on_the_wire = json.dumps([m.body for m in messages])
    for value in PERSONAL_VALUES:
        assert value not in on_the_wire, value
    (erased,) = [m for m in messages if m.body.get("event_type") == "PersonErased"]
    assert erased.body["data"]["owner_key"] == owner_key("owner-1")
    assert erased.body["data"]["bookings_cancelled"] == 2

    audit = PersonErasure.objects.get()
    assert (audit.erased_by_type, audit.erased_by_id) == ("support", "cli:agent-7")
    assert audit.subject_key == owner_key("owner-1")

    assert person_data_export(user_id="owner-1") | {"generated_at": None} == {
        "user_id": "owner-1",
        "generated_at": None,
        "profile": None,
        "holds": [],
        "bookings": [],
        "payments": [],
        "history": [],
        "notifications": [],
        "owner_limits": [],
        "waitlist": [],
    }
    answer = api_client_for(sub="owner-1", roles=["pet_owner"]).get("/api/v1/me/data")
    assert answer.json()["bookings"] == []
    assert answer.json()["holds"] == []


def test_support_erases_from_the_admin_after_confirming(client, person):
    client.force_login(User.objects.create_superuser("agent", "agent@example.com", "pw"))
    selected = [str(person.bookings["completed"].id)]
    asked = client.post(
        "/admin/bookings/booking/", {"action": "erase_owner_data", "_selected_action": selected}
    )
    assert asked.status_code == 200
    assert b"cannot be undone" in asked.content
    assert Booking.objects.filter(user_id="owner-1").exists()  # nothing done before confirming
    done = client.post(
        "/admin/bookings/booking/",
        {
            "action": "erase_owner_data",
            "_selected_action": selected,
            "apply": "1",
            "confirm": "on",
        },
    )
    assert done.status_code == 302
    assert not Booking.objects.filter(user_id="owner-1").exists()
    audit = PersonErasure.objects.get()
    assert audit.erased_by_id == f"admin:{User.objects.get(username='agent').pk}"
    assert Event.objects.filter(event_type="PersonErased", aggregate_id=audit.pseudonym).exists()
    assert_counters_match_rows()


def test_an_erasure_the_admin_cannot_finish_now_is_said_and_can_run_again(
    client, person, monkeypatch
):
    """An owner's future booking whose slot someone else is changing: the erasure stops at that
    cancellation (409 slot_busy inside), the admin says so instead of a 500, nothing of theirs
    is pseudonymised yet, and running it again once the slot is free finishes it."""
    import threading

    from petpro_booking.core.locking import lock_manager
    from slots.locking import SlotRef, slot_lock_keys

    client.force_login(User.objects.create_superuser("agent", "agent@example.com", "pw"))
    booking = person.bookings["confirmed"]
    key = slot_lock_keys(SlotRef(booking.slot_id, booking.clinic_id, booking.slot.service_id))
    monkeypatch.setattr(lock_manager(), "wait_seconds", 0.2)
    taken, done = threading.Event(), threading.Event()

    def someone_else_changes_the_slot() -> None:
        with lock_manager().acquire(*key):
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=someone_else_changes_the_slot)
    holder.start()
    assert taken.wait(5)
    erase = {
        "action": "erase_owner_data",
        "_selected_action": [str(booking.id)],
        "apply": "1",
        "confirm": "on",
    }
    try:
        answer = client.post("/admin/bookings/booking/", erase, follow=True)
    finally:
        done.set()
        holder.join()
    assert answer.status_code == 200
    said = [str(message) for message in answer.context["messages"]]
    assert any(m.startswith("Owner owner-1 not erased yet:") for m in said), said
    assert not PersonErasure.objects.exists()
    assert Booking.objects.filter(user_id="owner-1").exists()
    asked = ErasureRequest.objects.get()  # written down: the resume job would finish it
    assert (asked.user_id, asked.attempts, asked.last_error) == ("owner-1", 1, "slot_busy")

    again = client.post("/admin/bookings/booking/", erase, follow=True)
    assert any(str(m).startswith("Owner erased") for m in again.context["messages"])
    assert not Booking.objects.filter(user_id="owner-1").exists()
    assert not ErasureRequest.objects.exists()
    assert_counters_match_rows()


def test_personal_data_actions_over_the_owner_limit_do_nothing(client, person, monkeypatch):
    # An erasure is several transactions per owner: a "select all" of bookings must not run
    # past the web worker's timeout with some owners erased and others not.
    monkeypatch.setattr("bookings.personal_data_admin.PERSONAL_DATA_MAX_OWNERS", 0)
    client.force_login(User.objects.create_superuser("agent", "agent@example.com", "pw"))
    selected = [str(person.bookings["completed"].id)]
    for action, extra in (
        ("export_owner_data", {}),
        ("erase_owner_data", {"apply": "1", "confirm": "on"}),
    ):
        page = client.post(
            "/admin/bookings/booking/",
            {"action": action, "_selected_action": selected, **extra},
            follow=True,
        )
        said = [str(message) for message in page.context["messages"]]
        assert said[0].startswith("1 owners selected; an action changes at most 0 at a time."), (
            action
        )
        assert page["Content-Type"].startswith("text/html")  # no export document
    assert Booking.objects.filter(user_id="owner-1").exists()
    assert not PersonErasure.objects.exists()
