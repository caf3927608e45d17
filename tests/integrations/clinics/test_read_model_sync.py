"""The clinics read-model fed by the Clinic Service (a real HTTP stub): fetched on first use,
refreshed when stale, by command and beat task; reads keep working while it is down."""

from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.clinics import client as clinic_client
from slots import tasks
from slots.clinic_sync import clinic_sync_from_service, clinic_upsert
from slots.models import Clinic, ClinicService, Slot
from tests.conftest import api_client_for
from tests.factories import ClinicFactory, ClinicServiceFactory, SlotFactory

pytestmark = pytest.mark.django_db

CLINIC_BODY = {"id": "c-7", "name": "Vet Seven", "timezone": "Europe/Vienna", "active": True}
SERVICE_BODY = {
    "id": "s-1",
    "name": "Vaccination",
    "duration_minutes": 20,
    "price": "35.50",
    "currency": "EUR",
    "species": ["dog", "cat"],
    "requires_payment": True,
    "cancellation_window_hours": 12,
}


def serve_clinic(stub, clinic_id="c-7", clinic=None, services=None):
    stub.route(
        "GET", f"/api/v1/clinics/{clinic_id}", body=clinic or {**CLINIC_BODY, "id": clinic_id}
    )
    stub.route("GET", f"/api/v1/clinics/{clinic_id}/services", body=services or [SERVICE_BODY])


def stale_clinic(clinic_id="c-7", **fields):
    clinic = ClinicFactory(id=clinic_id, name="Old name", timezone="Europe/Vienna", **fields)
    Clinic.objects.filter(id=clinic_id).update(synced_at=timezone.now() - dt.timedelta(hours=2))
    return clinic


@pytest.fixture
def owner():
    return api_client_for(sub="owner-1", roles=["pet_owner"])


def test_a_clinic_is_fetched_on_first_use_and_then_read_locally(clinic_service_stub, owner):
    serve_clinic(clinic_service_stub)

    first = owner.get("/api/v1/clinics/c-7")
    services = owner.get("/api/v1/clinics/c-7/services")
    again = owner.get("/api/v1/clinics/c-7")

    assert first.status_code == 200
    assert first.json() == {
        "id": "c-7",
        "name": "Vet Seven",
        "timezone": "Europe/Vienna",
        "active": True,
    }
    assert again.json() == first.json()
    assert [s["id"] for s in services.json()["results"]] == ["s-1"]
    service = ClinicService.objects.get(id="s-1")
    assert (service.clinic_id, service.price, service.species, service.requires_payment) == (
        "c-7",
        Decimal("35.50"),
        ["dog", "cat"],
        True,
    )
    assert service.cancellation_window_hours == 12
    assert Clinic.objects.get(id="c-7").synced_at is not None
    # one fetch of each: the read-model answered everything after it
    assert clinic_service_stub.count("GET", "/api/v1/clinics/c-7") == 1
    assert clinic_service_stub.count("GET", "/api/v1/clinics/c-7/services") == 1


def test_a_stale_clinic_is_refreshed_and_services_no_longer_offered_are_deactivated(
    clinic_service_stub, owner
):
    clinic = stale_clinic()
    ClinicServiceFactory(id="s-1", clinic=clinic, price=Decimal("20.00"))
    ClinicServiceFactory(id="s-old", clinic=clinic)
    serve_clinic(clinic_service_stub)

    response = owner.get("/api/v1/clinics/c-7")

    assert response.json()["name"] == "Vet Seven"
    assert ClinicService.objects.get(id="s-1").price == Decimal("35.50")
    assert ClinicService.objects.get(id="s-old").active is False
    assert ClinicService.objects.get(id="s-1").active is True


def test_a_clinic_the_service_no_longer_knows_is_marked_inactive(clinic_service_stub, owner):
    stale_clinic()

    response = owner.get("/api/v1/clinics/c-7")

    assert response.status_code == 200
    assert response.json()["active"] is False


def test_unknown_everywhere_is_404(clinic_service_stub, owner):
    assert owner.get("/api/v1/clinics/c-nowhere").status_code == 404


def test_search_and_reads_keep_working_while_the_clinic_service_is_down(clinic_service_stub, owner):
    clinic = stale_clinic()
    service = ClinicServiceFactory(id="s-1", clinic=clinic)
    slots = [SlotFactory(clinic=clinic, service=service) for _ in range(3)]
    clinic_service_stub.route("GET", "/api/v1/clinics/c-7", status=503)
    clinic_service_stub.route("GET", "/api/v1/clinics/c-unknown", status=503)

    clinic_read = owner.get("/api/v1/clinics/c-7")
    search = owner.get("/api/v1/slots", {"clinic_id": "c-7"})
    slot_read = owner.get(f"/api/v1/slots/{slots[0].id}")
    unknown = owner.get("/api/v1/clinics/c-unknown")  # the breaker opens during this one
    started = time.monotonic()
    clinic_again = owner.get("/api/v1/clinics/c-7")
    unknown_again = owner.get("/api/v1/clinics/c-unknown")
    fast = time.monotonic() - started

    assert clinic_read.status_code == 200
    assert clinic_read.json()["name"] == "Old name"
    assert search.status_code == 200
    assert search.json()["count"] == 3
    assert slot_read.status_code == 200
    assert unknown.status_code == 503
    assert unknown.json()["error"]["code"] == "dependency_unavailable"
    assert unknown.json()["error"]["details"] == {"dependency": "clinic service"}
    assert clinic_again.status_code == 200
    assert unknown_again.status_code == 503
    assert fast < 0.3  # breaker open: no waiting for the Clinic Service any more
    assert clinic_client.reader.breaker.current_state == "open"


def test_staff_can_add_slots_for_a_clinic_first_seen(clinic_service_stub):
    serve_clinic(clinic_service_stub)
    support = api_client_for(sub="support-1", roles=["support"])
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)

    response = support.post(
        "/api/v1/slots",
        {
            "clinic_id": "c-7",
            "service_id": "s-1",
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=20)).isoformat(),
        },
        format="json",
    )

    assert response.status_code == 201
    assert Slot.objects.filter(clinic_id="c-7", service_id="s-1").count() == 1


def test_a_service_added_since_the_last_sync_is_fetched_for_a_new_slot(clinic_service_stub):
    serve_clinic(clinic_service_stub)
    support = api_client_for(sub="support-1", roles=["support"])
    support.get("/api/v1/clinics/c-7")  # now known and fresh, with s-1 only
    serve_clinic(clinic_service_stub, services=[SERVICE_BODY, {**SERVICE_BODY, "id": "s-2"}])
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)

    response = support.post(
        "/api/v1/slots",
        {
            "clinic_id": "c-7",
            "service_id": "s-2",
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=20)).isoformat(),
        },
        format="json",
    )

    assert response.status_code == 201


def test_slot_for_an_unknown_clinic_is_503_while_the_clinic_service_is_down(clinic_service_stub):
    clinic_service_stub.stop()
    support = api_client_for(sub="support-1", roles=["support"])
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)

    response = support.post(
        "/api/v1/slots",
        {
            "clinic_id": "c-7",
            "service_id": "s-1",
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=20)).isoformat(),
        },
        format="json",
    )

    assert response.status_code == 503
    assert response.json()["error"]["details"] == {"dependency": "clinic service"}


def test_refresh_command_rereads_every_known_clinic(clinic_service_stub, capsys):
    stale_clinic("c-7")
    ClinicFactory(id="c-gone")
    ClinicFactory(id="c-8")
    Clinic.objects.update(synced_at=timezone.now())  # fresh: the command refreshes anyway
    serve_clinic(clinic_service_stub, "c-7")
    serve_clinic(clinic_service_stub, "c-8", clinic={**CLINIC_BODY, "id": "c-8", "name": "Eight"})
    clinic_client.clinic_get(clinic_id="c-7")  # a cached answer the command must not trust

    clinic_service_stub.route("GET", "/api/v1/clinics/c-7", body={**CLINIC_BODY, "name": "Renamed"})
    call_command("refresh_clinics")

    assert "refreshed 2, unknown to the Clinic Service 1, failed 0" in capsys.readouterr().out
    assert Clinic.objects.get(id="c-7").name == "Renamed"
    assert Clinic.objects.get(id="c-8").name == "Eight"
    assert Clinic.objects.get(id="c-gone").active is False


def test_refresh_command_fails_loudly_when_the_clinic_service_is_down(clinic_service_stub):
    ClinicFactory(id="c-7", name="Kept")
    clinic_service_stub.stop()

    with pytest.raises(CommandError):
        call_command("refresh_clinics")
    assert Clinic.objects.get(id="c-7").name == "Kept"


def test_beat_task_refreshes_known_clinics(clinic_service_stub):
    stale_clinic("c-7")
    serve_clinic(clinic_service_stub, "c-7")

    tasks.clinics_refresh.delay()

    assert Clinic.objects.get(id="c-7").name == "Vet Seven"


def test_without_clinic_service_url_the_local_tables_are_the_source(settings, capsys):
    settings.CLINIC_SERVICE_URL = ""
    ClinicFactory(id="c-local", name="Local Vet")
    owner = api_client_for(sub="owner-1", roles=["pet_owner"])

    assert owner.get("/api/v1/clinics/c-local").json()["name"] == "Local Vet"
    assert owner.get("/api/v1/clinics/c-7").status_code == 404
    call_command("refresh_clinics")
    assert "nothing to do" in capsys.readouterr().out
    assert tasks.clinics_refresh.apply().get() == {"refreshed": 0, "unknown": 0, "failed": 0}


def test_changing_a_clinic_row_drops_its_cached_answers(
    clinic_service_stub, django_capture_on_commit_callbacks
):
    serve_clinic(clinic_service_stub)
    clinic_client.clinic_get(clinic_id="c-7")

    with django_capture_on_commit_callbacks(execute=True):
        clinic_upsert(clinic_id="c-7", name="Edited", timezone="Europe/Vienna")
    clinic_client.clinic_get(clinic_id="c-7")

    assert clinic_service_stub.count("GET", "/api/v1/clinics/c-7") == 2


def test_an_old_cached_answer_does_not_pass_for_a_fresh_sync(clinic_service_stub, owner, settings):
    serve_clinic(clinic_service_stub, clinic={**CLINIC_BODY, "name": "Cached name"})
    clinic_client.clinic_get(clinic_id="c-7")  # an answer in the cache
    clinic = stale_clinic()
    synced_at = Clinic.objects.get(id=clinic.id).synced_at
    settings.CLINIC_CACHE_SECONDS = 0  # the cached answer and the local row are both old now
    clinic_service_stub.stop()

    response = owner.get("/api/v1/clinics/c-7")

    assert response.json()["name"] == "Old name"  # the local row, not the old cached answer
    assert Clinic.objects.get(id="c-7").synced_at == synced_at


def test_refresh_command_can_import_a_clinic_not_yet_known(clinic_service_stub, capsys):
    serve_clinic(clinic_service_stub, "c-9", clinic={**CLINIC_BODY, "id": "c-9", "name": "Nine"})

    call_command("refresh_clinics", "--clinic", "c-9")

    assert "refreshed 1," in capsys.readouterr().out
    assert Clinic.objects.get(id="c-9").name == "Nine"
    assert ClinicService.objects.filter(clinic_id="c-9").count() == 1


def test_booking_rules_are_taken_when_the_clinic_service_sends_them(clinic_service_stub, owner):
    clinic = stale_clinic()
    ClinicServiceFactory(id="s-1", clinic=clinic, min_notice_minutes=30, buffer_after_minutes=5)
    ClinicServiceFactory(id="s-2", clinic=clinic, min_notice_minutes=45)
    with_rules = {**SERVICE_BODY, "min_notice_minutes": 1440, "booking_horizon_days": 60}
    without = {**SERVICE_BODY, "id": "s-2"}
    serve_clinic(clinic_service_stub, services=[with_rules, without])

    owner.get("/api/v1/clinics/c-7")

    sent = ClinicService.objects.get(id="s-1")
    assert (sent.min_notice_minutes, sent.booking_horizon_days) == (1440, 60)
    assert sent.buffer_after_minutes == 5  # not sent: ours stays
    assert ClinicService.objects.get(id="s-2").min_notice_minutes == 45


def test_a_negative_rule_from_the_clinic_service_is_not_used(clinic_service_stub, owner):
    serve_clinic(clinic_service_stub, services=[{**SERVICE_BODY, "min_notice_minutes": -5}])
    assert owner.get("/api/v1/clinics/c-7").status_code == 503
    assert not ClinicService.objects.filter(id="s-1").exists()


def test_a_service_with_slots_listed_under_another_clinic_stays_with_its_slots(
    clinic_service_stub, caplog
):
    slot = SlotFactory(service=ClinicServiceFactory(id="s-1", clinic=ClinicFactory(id="c-1")))
    other = {**SERVICE_BODY, "id": "s-2", "name": "Checkup"}
    serve_clinic(clinic_service_stub, services=[SERVICE_BODY, other])

    with caplog.at_level(logging.ERROR, logger="slots.clinic_sync"):
        clinic_sync_from_service(clinic_id="c-7", refresh=True)

    assert ClinicService.objects.get(id="s-1").clinic_id == "c-1"
    assert ClinicService.objects.get(id="s-2").clinic_id == "c-7"  # the rest of the sync went on
    assert "service s-1" in caplog.text
    assert "has slots at clinic c-1" in caplog.text
    # Its own clinic's next sync no longer finds it there and deactivates it; the slot stays.
    serve_clinic(clinic_service_stub, clinic_id="c-1", services=[{**SERVICE_BODY, "id": "s-9"}])
    clinic_sync_from_service(clinic_id="c-1", refresh=True)
    assert ClinicService.objects.get(id="s-1").active is False
    assert Slot.objects.get(id=slot.id).clinic_id == "c-1"
    # ...and a later sync of c-7 does not bring it back to life (no flip-flop)
    clinic_sync_from_service(clinic_id="c-7", refresh=True)
    assert ClinicService.objects.values_list("clinic_id", "active").get(id="s-1") == ("c-1", False)


def test_a_service_without_slots_moves_to_the_clinic_that_lists_it(clinic_service_stub, owner):
    ClinicServiceFactory(id="s-1", clinic=ClinicFactory(id="c-1"))
    Clinic.objects.filter(id="c-1").update(synced_at=timezone.now())  # fresh: read locally
    assert [s["id"] for s in owner.get("/api/v1/clinics/c-1/services").json()["results"]] == [
        "s-1"
    ]  # cached now
    serve_clinic(clinic_service_stub)

    clinic_sync_from_service(clinic_id="c-7", refresh=True)

    assert ClinicService.objects.get(id="s-1").clinic_id == "c-7"
    assert owner.get("/api/v1/clinics/c-1/services").json()["results"] == []


def _post_slot(client, service_id: str = "s-1"):
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    return client.post(
        "/api/v1/slots",
        {
            "clinic_id": "c-7",
            "service_id": service_id,
            "start_at": start.isoformat(),
            "end_at": (start + dt.timedelta(minutes=20)).isoformat(),
        },
        format="json",
    )


def test_a_slot_for_a_service_of_a_stale_clinic_syncs_the_clinic_first(clinic_service_stub):
    stale_clinic()
    ClinicServiceFactory(id="s-1", clinic_id="c-7", name="Old service name")
    serve_clinic(clinic_service_stub)
    support = api_client_for(sub="support-1", roles=["support"])

    assert _post_slot(support).status_code == 201
    clinic = Clinic.objects.get(id="c-7")
    assert clinic.name == "Vet Seven"
    assert ClinicService.objects.get(id="s-1").name == "Vaccination"
    assert timezone.now() - clinic.synced_at < dt.timedelta(minutes=1)


def test_a_slot_for_a_known_service_of_a_fresh_clinic_reads_the_service_once(
    clinic_service_stub,
):
    serve_clinic(clinic_service_stub)
    support = api_client_for(sub="support-1", roles=["support"])
    support.get("/api/v1/clinics/c-7")  # known and fresh now
    clinic_service_stub.stop()  # no call to the Clinic Service either

    with CaptureQueriesContext(connection) as queries:
        assert _post_slot(support).status_code == 201
    clinic_reads = [q["sql"] for q in queries if q["sql"].startswith('SELECT "clinics".')]
    service_reads = [
        q["sql"]
        for q in queries
        if q["sql"].startswith('SELECT "clinic_services".') and "FOR UPDATE" not in q["sql"]
    ]
    assert clinic_reads == []
    assert len(service_reads) == 1


@pytest.mark.django_db(transaction=True)  # the cached searches are dropped on commit
def test_a_clinic_the_service_no_longer_knows_leaves_the_cached_search(clinic_service_stub, owner):
    clinic = ClinicFactory(id="c-7", timezone="Europe/Vienna")
    Clinic.objects.filter(id="c-7").update(synced_at=timezone.now())  # fresh: no sync on read
    slot = SlotFactory(clinic=clinic, service=ClinicServiceFactory(id="s-1", clinic=clinic))
    support = api_client_for(sub="support-1", roles=["support"])
    query = {"clinic_id": "c-7", "include_unbookable": "true"}
    # Both searches warm their cached page.
    before = support.get("/api/v1/slots", query).json()
    assert [(s["id"], s["bookable"]) for s in before["results"]] == [(str(slot.id), True)]
    assert owner.get("/api/v1/slots", {"clinic_id": "c-7"}).json()["count"] == 1

    # The Clinic Service answers 404 for c-7 now (no route): the clinic is unknown to it.
    clinic_sync_from_service(clinic_id="c-7", refresh=True)

    assert Clinic.objects.get(id="c-7").active is False
    after = support.get("/api/v1/slots", query).json()
    assert [(s["bookable"], s["reason"]) for s in after["results"]] == [(False, "clinic_inactive")]
    assert owner.get("/api/v1/slots", {"clinic_id": "c-7"}).json()["count"] == 0
