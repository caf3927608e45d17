"""The clinics gateway picks the adapter from settings; the read-model asks it, not settings."""

from __future__ import annotations

import pytest

from integrations.clinics import client, gateway, local
from slots.clinic_sync import clinic_read_through, clinics_refresh
from tests.factories import ClinicFactory


def test_without_a_clinic_service_the_local_adapter_says_there_is_nothing_to_fetch(settings):
    settings.CLINIC_SERVICE_URL = ""
    assert gateway._adapter() is local
    assert gateway.clinics_fed_from_outside() is False
    gateway.invalidate_clinic("c-1")  # nothing cached, nothing to forget: no error
    with pytest.raises(LookupError):
        gateway.clinic_get(clinic_id="c-1")


def test_with_a_clinic_service_the_client_is_the_adapter(settings):
    settings.CLINIC_SERVICE_URL = "http://127.0.0.1:1"
    assert gateway._adapter() is client
    assert gateway.clinics_fed_from_outside() is True


@pytest.mark.django_db
def test_the_read_model_serves_local_clinics_without_calling_out(settings):
    settings.CLINIC_SERVICE_URL = ""
    clinic = ClinicFactory(id="c-local")
    assert clinic_read_through(clinic_id="c-local") == clinic  # never stale, never fetched
    assert clinic_read_through(clinic_id="nowhere") is None
    report = clinics_refresh()
    assert (report.refreshed, report.unknown, report.failed) == (0, 0, 0)
