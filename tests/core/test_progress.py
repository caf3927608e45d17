"""Long commands show progress: a bar on a terminal, plain lines in a log (core.progress)."""

from __future__ import annotations

import io
import os
import pty

import pytest
from django.core.management import call_command
from django.core.management.base import OutputWrapper

from petpro_booking.core.progress import progress
from slots.models import Slot


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    assert list(progress(range(20), description="work", stream=out, every=25)) == list(range(20))
    assert out.getvalue().splitlines() == [
        "work: 5/20 (25%)",
        "work: 10/20 (50%)",
        "work: 15/20 (75%)",
        "work: 20/20 (100%)",
    ]


def test_unknown_total_counts_and_finishes():
    out = io.StringIO()
    list(progress((n for n in range(3)), description="work", stream=out))
    assert out.getvalue() == "work: 3 done\n"


def test_a_bar_on_a_terminal():
    primary, secondary = pty.openpty()
    with os.fdopen(secondary, "w") as terminal:
        stream = OutputWrapper(terminal)
        assert stream.isatty()
        assert list(progress(range(5), description="work", stream=stream)) == list(range(5))
    written = os.read(primary, 65536).decode(errors="replace")
    os.close(primary)
    assert "work" in written
    assert "━" in written  # rich's bar, not the plain lines
    assert "work: 5/5" not in written


@pytest.mark.django_db(transaction=True)
def test_generate_slots_over_many_weeks_reports_each_week(clinic_service):
    out = io.StringIO()
    call_command(
        "generate_slots",
        "--clinic-id",
        clinic_service.clinic_id,
        "--service-id",
        clinic_service.id,
        "--from",
        "2030-01-07",
        "--to",
        "2030-03-31",  # 12 weeks
        "--weekly",
        "1-5 09:00-10:00",
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "generating slots: 2/12 (16%)"
    assert "generating slots: 12/12 (100%)" in lines
    assert lines[-1] == "120 new slots over 12 week(s)."
    assert Slot.objects.filter(service=clinic_service).count() == 12 * 5 * 2
