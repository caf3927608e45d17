"""The private internals the hot path relies on (issue 13 point 6), tested so that an upgrade of
Django or python-redis-lock fails here rather than in a booking:

* `core/db.py` RowReader/RowInserter rebuild the ORM's SELECT ... JOIN and INSERT for speed
  (the hold benchmark: worker CPU per hold 3.4 -> 2.8 ms); compared with the ORM for every
  model they are used with;
* `core/locking.py` takes python-redis-lock's lease with its own SET NX (`Lock._name`,
  `Lock._id`), leaves extend to the library and releases with the library's own unlock script,
  by its SHA, in a pipeline (`Lock.unlock_script`, `Lock._signal`, `Lock._signal_expire`);
* both libraries are pinned exactly, in pyproject.toml and requirements.lock alike.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.metadata
import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import redis_lock
from django.db import connection
from django.utils import timezone
from redis.crc import key_slot

from bookings.models import Booking, BookingHistory
from integrations.models import LocalPet
from petpro_booking.core import db
from petpro_booking.core.locking import DistributedLockManager
from petpro_booking.events.models import Event
from reservations.models import Reservation
from slots.locking import slot_lock_key
from slots.models import Slot
from tests.factories import LocalPetFactory

ROOT = Path(__file__).resolve().parents[2]
PINNED = {"django": "Django", "python-redis-lock": "python-redis-lock"}
# Every use of the private mini-ORM in the source: (class, model, related names).
USES = {
    ("RowReader", "Slot", ("clinic", "service")),
    ("RowReader", "LocalPet", ()),
    ("RowInserter", "Reservation", ()),
    ("RowInserter", "Event", ()),
    ("RowInserter", "Booking", ()),
    ("RowInserter", "BookingHistory", ()),
}


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def _written_alike(ours, theirs, *, skip: set[str]) -> None:
    """RowInserter's row (`ours`) holds what the ORM's save wrote (`theirs`), but for the
    fields that differ by nature (`skip`), and its instance says what its row holds."""
    model = type(ours)
    stored_ours = _fields(model.objects.get(pk=ours.pk))
    stored_theirs = _fields(model.objects.get(pk=theirs.pk))
    assert {k: v for k, v in stored_ours.items() if k not in skip} == {
        k: v for k, v in stored_theirs.items() if k not in skip
    }
    assert stored_ours == _fields(ours)


@pytest.mark.parametrize("package", sorted(PINNED))
def test_the_libraries_whose_internals_we_use_are_pinned_exactly(package):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.lower().startswith(package + "==")]
    assert len(pins) == 1, f"{package} must be pinned with == in pyproject.toml"
    version = pins[0].split("==", 1)[1]
    lock = (ROOT / "requirements.lock").read_text().lower()
    assert f"{package}=={version}".lower() in lock.splitlines()
    assert importlib.metadata.version(PINNED[package]) == version  # what runs is what is pinned


def test_every_use_of_the_mini_orm_is_one_this_file_checks():
    found = set()
    for folder in ("petpro_booking", "slots", "reservations", "bookings", "integrations"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in {"RowReader", "RowInserter"}
                    and node.args
                    and isinstance(node.args[0], ast.Name)
                ):
                    related = tuple(a.value for a in node.args[1:] if isinstance(a, ast.Constant))
                    found.add((node.func.id, node.args[0].id, related))
    assert found == USES, "a new use of RowReader/RowInserter needs its ORM comparison here"


def test_row_reader_of_slots_with_names_reads_what_the_orm_reads(slot):
    found = db.RowReader(Slot, "clinic", "service").get(slot.id)
    expected = Slot.objects.select_related("clinic", "service").get(id=slot.id)
    assert _fields(found) == _fields(expected)
    assert _fields(found.clinic) == _fields(expected.clinic)
    assert _fields(found.service) == _fields(expected.service)
    # The ORM's own SELECT names the same columns in the same order.
    compiled = str(Slot.objects.select_related("clinic", "service").filter(id=slot.id).query)
    ours = db.RowReader(Slot, "clinic", "service")
    ours.get(slot.id)
    assert _columns(ours._sql) == _columns(compiled)


def test_row_reader_of_pets_reads_what_the_orm_reads(slot):  # slot: the database
    pet = LocalPetFactory()
    found = db.RowReader(LocalPet).get(pet.id)
    assert _fields(found) == _fields(LocalPet.objects.get(id=pet.id))


def _columns(sql: str | None) -> list[str]:
    select = (sql or "").split(" FROM ", 1)[0]
    return [re.sub(r'^.*\."?([a-z_]+)"?$', r"\1", c.strip()) for c in select[7:].split(",")]


@pytest.mark.parametrize("model", ["Reservation", "Event"])
def test_row_inserter_writes_the_row_create_writes(model, slot):
    expires_at = timezone.now() + dt.timedelta(minutes=10)
    if model == "Reservation":

        def make():
            return Reservation(
                slot=slot, user_id="owner-1", pet_id="pet-1", pet_name="Rex", expires_at=expires_at
            )

        cls = Reservation
    else:
        versions = iter(range(1, 10))

        def make():
            return Event(
                aggregate_type="slot",
                aggregate_id=str(slot.id),
                aggregate_version=next(versions),
                event_type="SlotUpdated",
                payload={"n": 1, "price": "40.00"},
                metadata={"actor": {"type": "system", "id": "booking-service"}},
            )

        cls = Event
    ours = db.RowInserter(cls).insert(make())
    theirs = make()
    theirs.save(force_insert=True)
    _written_alike(
        ours, theirs, skip={"id", "event_id", "created_at", "updated_at", "aggregate_version"}
    )


def _booking_of_a_new_hold(slot, reference: str) -> Booking:
    """A booking not yet written, of a hold written for it."""
    hold = Reservation.objects.create(
        slot=slot,
        user_id="owner-1",
        pet_id="pet-1",
        pet_name="Rex",
        expires_at=timezone.now() + dt.timedelta(minutes=10),
    )
    return Booking(
        reference=reference,
        slot=slot,
        reservation=hold,
        clinic_id=slot.clinic_id,
        service_id=slot.service_id,
        user_id="owner-1",
        pet_id="pet-1",
        status="confirmed",
        amount=Decimal("40.00"),
        currency="EUR",
        event_version=2,
    )


def test_row_inserter_of_bookings_writes_what_create_writes(slot):
    from django.db import transaction

    with transaction.atomic():
        ours = db.RowInserter(Booking).insert(_booking_of_a_new_hold(slot, "PP-AAAAAA"))
        theirs = _booking_of_a_new_hold(slot, "PP-BBBBBB")
        theirs.save(force_insert=True)
    _written_alike(
        ours, theirs, skip={"id", "reference", "reservation_id", "created_at", "updated_at"}
    )


def test_row_inserter_of_booking_history_writes_what_create_writes(slot):
    from django.db import transaction

    booking = _booking_of_a_new_hold(slot, "PP-CCCCCC")
    booking.save(force_insert=True)

    def make() -> BookingHistory:
        return BookingHistory(
            booking=booking,
            from_status="",
            to_status="confirmed",
            actor_type="user",
            actor_id="owner-1",
            reason="The owner asked",  # encrypted at rest, as the ORM writes it
            internal_note="",
        )

    with transaction.atomic():
        ours = db.RowInserter(BookingHistory).insert(make())
        theirs = make()
        theirs.save(force_insert=True)
    _written_alike(ours, theirs, skip={"id", "at"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT reason FROM booking_history WHERE id = %s", [ours.id])
        assert "owner" not in cursor.fetchone()[0]


def test_python_redis_lock_keys_and_id_are_what_the_manager_sets(private_redis):
    client = redis.Redis.from_url(private_redis.url)
    lock = redis_lock.Lock(client, "petpro:slot:c:s:{x}", expire=5, auto_renewal=False)
    # The manager's SET NX writes exactly the key and value the library releases and extends.
    assert lock._name == "lock:petpro:slot:c:s:{x}"
    assert lock._signal == "lock-signal:petpro:slot:c:s:{x}"
    assert isinstance(lock._id, str)
    assert lock._id
    assert client.set(lock._name, lock._id, nx=True, ex=5)
    lock.extend(expire=7)
    assert 5 < client.ttl(lock._name) <= 7
    lock.release()
    assert client.exists(lock._name) == 0
    # Someone else's lease is neither extended nor released by us.
    client.set(lock._name, "someone-else")
    with pytest.raises(redis_lock.NotAcquired):
        lock.extend(expire=7)
    with pytest.raises(redis_lock.NotAcquired):
        lock.release()
    assert client.get(lock._name) == b"someone-else"


def test_the_manager_holds_the_librarys_key_while_inside(private_redis):
    client = redis.Redis.from_url(private_redis.url)
    manager = DistributedLockManager(redis_url=private_redis.url, ttl_seconds=5, wait_seconds=0.2)
    key = slot_lock_key(clinic_id="c1", service_id="s1", slot_id="x1")
    with manager.acquire(key):
        assert client.exists(f"lock:petpro:{key}") == 1
        assert 0 < client.ttl(f"lock:petpro:{key}") <= 5
    assert client.exists(f"lock:petpro:{key}") == 0


def test_slot_lock_keys_keep_a_locks_two_keys_on_one_cluster_node():
    key = slot_lock_key(clinic_id="clinic-berlin", service_id="svc-1", slot_id="5b0e-slot")
    assert key == "slot:clinic-berlin:svc-1:{5b0e-slot}"
    name = f"petpro:{key}"
    assert key_slot(f"lock:{name}".encode()) == key_slot(f"lock-signal:{name}".encode())
    assert key_slot(f"lock:{name}".encode()) == key_slot(b"5b0e-slot")
    # Slots spread over the cluster: the tag is the slot id, not the clinic.
    tags = {
        key_slot(f"lock:petpro:{slot_lock_key(clinic_id='c', service_id='s', slot_id=i)}".encode())
        for i in range(50)
    }
    assert len(tags) > 40


def test_the_pipelined_release_runs_the_librarys_unlock_script_with_its_arguments(private_redis):
    import hashlib
    import inspect

    client = redis.Redis.from_url(private_redis.url)
    lock = redis_lock.Lock(client, "petpro:slot:c:s:{y}", expire=5, auto_renewal=False)
    assert lock.unlock_script.sha == hashlib.sha1(redis_lock.UNLOCK_SCRIPT).hexdigest()  # noqa: S324
    assert isinstance(lock._signal_expire, int)
    # What the manager's pipeline sends is what the library's release sends.
    assert (
        "self.unlock_script(client=self._client, keys=(self._name, self._signal), "
        "args=(self._id, self._signal_expire))"
    ) in inspect.getsource(redis_lock.Lock.release)
