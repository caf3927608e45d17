"""Personal data at rest: pet names, reasons and contact data are ciphertext in PostgreSQL, keys
rotate through `manage.py reencrypt_fields`, admin search finds a pet by its keyed hash."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bookings.services import booking_cancel
from integrations.models import LocalUser
from petpro_booking.core import crypto

from ..bookings.conftest import OWNER, SUPPORT, book_on
from ..factories import LocalPetFactory, LocalUserFactory

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = (
    "Biscuit the Brave",
    "owner-1-mail@example.com",
    "+49 170 5550101",
    "limping since Monday",
)


def raw_rows() -> str:
    """Every row of the tables with encrypted columns, as PostgreSQL's text of the row."""
    with connection.cursor() as cursor:
        text = []
        for table in ("reservations", "booking_history", "local_users", "local_pets"):
            cursor.execute(f"SELECT t::text FROM {table} t")  # noqa: S608
            text.extend(row[0] for row in cursor.fetchall())
    return "\n".join(text)


@pytest.fixture
def personal_booking(slot):
    LocalPetFactory(
        id="pet-1",
        name=SECRETS[0],
        owner__id="owner-1",
        owner__email=SECRETS[1],
        owner__phone=SECRETS[2],
        species="dog",
    )
    booking = book_on(slot, owner=OWNER)
    return booking_cancel(actor=SUPPORT, booking_id=booking.id, reason=SECRETS[3])


@pytest.fixture
def keys(settings):
    """Two real Fernet keys; the test decides which are configured."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    crypto.reset_keys()
    yield old, new
    crypto.reset_keys()


def test_raw_columns_hold_no_plaintext_and_the_orm_reads_it_back(keys, personal_booking):
    stored = raw_rows()
    for secret in SECRETS:
        assert secret not in stored
    assert crypto.TOKEN_PREFIX in stored
    personal_booking.reservation.refresh_from_db()
    assert personal_booking.reservation.pet_name == SECRETS[0]
    assert personal_booking.history.order_by("-id").first().reason == SECRETS[3]


def test_reencrypt_moves_every_row_to_the_newest_key(settings, keys, personal_booking):
    old, new = keys
    before = raw_rows()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    crypto.reset_keys()
    call_command("reencrypt_fields", verbosity=0)
    assert raw_rows() != before
    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key retired: everything still reads
    crypto.reset_keys()
    personal_booking.reservation.refresh_from_db()
    assert personal_booking.reservation.pet_name == SECRETS[0]
    assert personal_booking.history.order_by("-id").first().reason == SECRETS[3]
    settings.FIELD_ENCRYPTION_KEYS = [old]  # and the old key alone no longer does
    crypto.reset_keys()
    with pytest.raises(crypto.InvalidToken):
        personal_booking.reservation.refresh_from_db()


def test_reencrypt_sends_a_batch_of_rows_in_one_executemany(settings, keys, personal_booking):
    """Each batch's UPDATEs go as one executemany per set of columns (psycopg pipelines it),
    not one statement and round trip per row; a user without a phone is of another set."""
    old, new = keys
    LocalUserFactory(id="owner-nophone", email="n@example.com", phone="")
    for index in range(4):
        LocalPetFactory(
            owner__id=f"owner-x{index}", owner__email=f"x{index}@example.com", owner__phone="+4917"
        )
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    crypto.reset_keys()
    with CaptureQueriesContext(connection) as queries:
        call_command("reencrypt_fields", verbosity=0)
    users = sorted(q["sql"] for q in queries if 'UPDATE "local_users"' in q["sql"])
    assert len(users) == 2
    assert users[0].startswith("1 times: ")  # the user without a phone
    assert '"phone"' not in users[0]
    assert users[1].startswith("5 times: ")  # owner-1 and the four above, in one call
    settings.FIELD_ENCRYPTION_KEYS = [new]
    crypto.reset_keys()
    assert LocalUser.objects.get(id="owner-x3").email == "x3@example.com"
    assert LocalUser.objects.get(id="owner-nophone").email == "n@example.com"


def test_admin_finds_a_booking_and_a_hold_by_the_pet_name(client, personal_booking):
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    found = client.get("/admin/bookings/booking/", {"q": "  biscuit THE brave "})
    assert found.status_code == 200
    assert personal_booking.reference in found.content.decode()
    holds = client.get("/admin/reservations/reservation/", {"q": SECRETS[0]})
    assert str(personal_booking.reservation_id) in holds.content.decode()
    missing = client.get("/admin/bookings/booking/", {"q": "Biscuit"})
    assert personal_booking.reference not in missing.content.decode()


def test_filtering_an_encrypted_column_by_its_text_is_refused_not_silently_empty():
    from django.core.exceptions import FieldError

    from bookings.models import BookingHistory

    assert list(BookingHistory.objects.filter(reason="")) == []
    with pytest.raises(FieldError, match="encrypted"):
        list(BookingHistory.objects.filter(reason="limping since Monday"))
    with pytest.raises(FieldError):
        list(BookingHistory.objects.filter(reason__contains="limping"))


def _writer_holding(reservation_id):
    """Another session with the hold's row locked, as a confirm holds it while it changes only
    the status: (connection, release)."""
    import psycopg

    from petpro_booking.events.listener import listen_conninfo

    writer = psycopg.connect(**listen_conninfo())
    writer.execute("SELECT 1 FROM reservations WHERE id = %s FOR UPDATE", [reservation_id])
    return writer


def test_reencrypt_comes_back_for_a_row_a_writer_held_locked(settings, keys, personal_booking):
    """SKIP LOCKED passed a locked row over for good: it kept the old key's token, and once
    the old key was dropped the hold could not be read (InvalidToken)."""
    import threading

    from petpro_booking.core.model_fields import reencrypt_model
    from reservations.models import Reservation

    old, new = keys
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    crypto.reset_keys()
    writer = _writer_holding(personal_booking.reservation_id)
    releaser = threading.Timer(0.3, writer.commit)
    releaser.start()
    try:
        assert reencrypt_model(Reservation) == Reservation.objects.count()
    finally:
        releaser.join()
        writer.close()
    settings.FIELD_ENCRYPTION_KEYS = [new]
    crypto.reset_keys()
    personal_booking.reservation.refresh_from_db()
    assert personal_booking.reservation.pet_name == SECRETS[0]


def test_reencrypt_says_when_a_row_stayed_locked(settings, keys, personal_booking, monkeypatch):
    from petpro_booking.core import model_fields
    from reservations.models import Reservation

    old, new = keys
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    crypto.reset_keys()
    monkeypatch.setattr(model_fields, "REENCRYPT_LOCKED_ROUNDS", 2)
    monkeypatch.setattr(model_fields, "REENCRYPT_LOCKED_PAUSE_SECONDS", 0.01)
    writer = _writer_holding(personal_booking.reservation_id)
    try:
        with pytest.raises(model_fields.RowsStillLocked, match="1 rows of reservations"):
            model_fields.reencrypt_model(Reservation)
    finally:
        writer.close()
