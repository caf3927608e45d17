"""An erasure is written down before it starts: one that stops half-way (the process killed
between its cancellations and its last transaction) is finished by the beat job as the agent
asked it; two runs for one person at once make one audit row."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

from bookings import personal_data
from bookings.models import Booking, ErasureRequest, PersonErasure
from bookings.personal_data import erasure_resume_one, erasures_resume, person_erase
from bookings.tasks import erasure_resume
from petpro_booking.core.errors import ApplicationError
from petpro_booking.core.principal import Principal

from ..bookings.conftest import book_on, let_slot_start
from ..factories import LocalPetFactory
from .conftest import PERSONAL_VALUES
from .test_erasure import assert_counters_match_rows, every_row_as_text

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = Principal(sub="admin:7", roles=frozenset({"support"}))


class Killed(Exception):
    """The process dying between the cancellations and the last transaction."""


def test_an_erasure_that_stopped_half_way_is_finished_by_the_job(person, monkeypatch, settings):
    def killed(*, user_id: str) -> int:
        raise Killed

    monkeypatch.setattr(personal_data, "_release_live_holds", killed)
    with pytest.raises(Killed):
        person_erase(actor=AGENT, user_id="owner-1")
    # Its future bookings were cancelled; nothing is pseudonymised, the request is kept.
    assert Booking.objects.get(id=person.bookings["confirmed"].id).status == "cancelled"
    assert not PersonErasure.objects.exists()
    asked = ErasureRequest.objects.get()
    assert (asked.user_id, asked.requested_by_id) == ("owner-1", "admin:7")
    assert (asked.attempts, asked.last_error) == (1, "Killed")
    monkeypatch.undo()

    # Not before ERASURE_RESUME_AFTER_SECONDS: it may still be running.
    assert erasures_resume() == {"finished": 0, "stopped": 0}
    later = timezone.now() + dt.timedelta(seconds=settings.ERASURE_RESUME_AFTER_SECONDS + 1)
    assert erasures_resume(now=later) == {"finished": 1, "stopped": 0}

    audit = PersonErasure.objects.get()
    assert (audit.erased_by_type, audit.erased_by_id) == ("support", "admin:7")
    assert not ErasureRequest.objects.exists()
    text = every_row_as_text()
    for value in PERSONAL_VALUES:
        assert value not in text, value
    assert_counters_match_rows()


def test_the_beat_job_runs_every_few_minutes(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["erasure-resume"]
    assert schedule["task"] == erasure_resume.name == "bookings.erasure_resume"
    assert schedule["schedule"] <= settings.ERASURE_RESUME_AFTER_SECONDS


def test_a_request_that_stops_again_stays_and_counts_its_attempts(person, monkeypatch, settings):
    def busy(*, actor, user_id: str) -> int:
        raise ApplicationError("A slot is busy.", code="slot_busy", status_code=409)

    monkeypatch.setattr(personal_data, "_cancel_future_bookings", busy)
    settings.ERASURE_RESUME_AFTER_SECONDS = 0
    with pytest.raises(ApplicationError):
        person_erase(actor=AGENT, user_id="owner-1")
    later = timezone.now() + dt.timedelta(seconds=1)
    assert erasure_resume.apply(kwargs={}).get() == {"finished": 0, "stopped": 1}
    assert erasures_resume(now=later) == {"finished": 0, "stopped": 1}
    asked = ErasureRequest.objects.get()
    assert (asked.attempts, asked.last_error) == (3, "slot_busy")
    assert not PersonErasure.objects.exists()


def test_two_erasures_of_one_person_at_once_make_one_audit_row(slot, monkeypatch):
    """Support's admin action and the resume job (or two agents) on the same person, both past
    their cancellations at once: one pseudonymises, the other waits on the request's row lock,
    finds it gone and returns the same audit row instead of writing a second one."""
    LocalPetFactory(id="pet-1", name="Biscuit", owner__id="owner-1", species="dog")
    owner = Principal(sub="owner-1", roles=frozenset({"pet_owner"}))
    booking = book_on(slot, owner=owner, pet_id="pet-1")
    let_slot_start(slot)  # a past visit: nothing to cancel, only to pseudonymise
    both_cancelled = threading.Barrier(2, timeout=10)
    real_release = personal_data._release_live_holds

    def release_then_wait(*, user_id: str) -> int:
        released = real_release(user_id=user_id)
        both_cancelled.wait()
        return released

    monkeypatch.setattr(personal_data, "_release_live_holds", release_then_wait)
    audits: list[int] = []
    failures: list[BaseException] = []

    def erase(agent: str) -> None:
        try:
            actor = Principal(sub=agent, roles=frozenset({"support"}))
            audits.append(person_erase(actor=actor, user_id="owner-1").pk)
        except Exception as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    runs = [threading.Thread(target=erase, args=(f"admin:{n}",)) for n in (1, 2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert not failures, failures
    (audit,) = PersonErasure.objects.all()
    assert audits == [audit.pk, audit.pk]
    assert audit.counts["bookings"] == 1
    assert Booking.objects.get(id=booking.id).user_id == audit.pseudonym
    assert not ErasureRequest.objects.exists()


def test_support_sees_the_unfinished_erasures_in_the_admin_and_cannot_edit_them(client):
    from django.contrib.auth.models import User

    ErasureRequest.objects.create(
        user_id="owner-9", requested_by_id="admin:7", attempts=2, last_error="slot_busy"
    )
    client.force_login(User.objects.create_superuser("agent", "agent@example.com", "pw"))
    listed = client.get("/admin/bookings/erasurerequest/")
    assert listed.status_code == 200
    assert b"owner-9" in listed.content
    assert b"slot_busy" in listed.content
    assert client.get("/admin/bookings/erasurerequest/add/").status_code == 403
    assert (
        client.post("/admin/bookings/erasurerequest/owner-9/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert ErasureRequest.objects.filter(user_id="owner-9").exists()

    client.force_login(User.objects.create_user("clerk", is_staff=True))  # no clinic, not support
    assert client.get("/admin/bookings/erasurerequest/").status_code in (302, 403)


def test_the_command_refuses_an_id_no_person_can_have_and_writes_nothing():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="longer than 64"):
        call_command("erase_person", "x" * 65, "--by", "agent-7")
    with pytest.raises(CommandError, match="not been erased"):
        call_command("erase_person", "erased-0123", "--by", "agent-7")
    assert not ErasureRequest.objects.exists()
    assert not PersonErasure.objects.exists()


def test_the_job_never_asks_again_for_an_erasure_finished_since_it_read_it(person):
    """The job read the request, then support's own run finished it: resuming it must not
    write the request again and erase the id a second time (a second audit row and
    PersonErased, with new pseudonyms)."""
    stale = ErasureRequest.objects.create(user_id="owner-1", requested_by_id="admin:7")
    person_erase(actor=AGENT, user_id="owner-1")  # support's run: deletes the request
    assert erasure_resume_one(stale) is False
    assert PersonErasure.objects.count() == 1
    assert not ErasureRequest.objects.exists()


def test_a_cache_that_fails_after_the_commit_does_not_fail_the_erasure(person, monkeypatch):
    """Redis down when the erasure's transaction has committed: the erasure is done (the
    cached entries expire by themselves); no error reaches the admin or the job."""

    def redis_down(user_id: str) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(personal_data, "_forget_cached", redis_down)
    audit = person_erase(actor=AGENT, user_id="owner-1")
    assert PersonErasure.objects.get() == audit
    assert not ErasureRequest.objects.exists()
