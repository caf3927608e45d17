"""Numeric settings that cannot be read, or are out of their range, stop the process at
start-up with the variable's name (petpro_booking/settings/base.py: `_Env`,
`numbers_out_of_range`), instead of misbehaving later: a negative hold time made holds that
expired as they were made, a pool smaller than its minimum failed on the first request, a zero
interval made beat run a job without pause."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from petpro_booking.settings import base

BASE_SOURCE = Path(base.__file__).read_text()
# Numbers read from the environment that the settings check where they are read, or that
# are not a range (a derived value is checked under its variable's name).
CHECKED_ELSEWHERE = {
    "AXES_COOLOFF_MINUTES",  # checked as AXES_COOLOFF_TIME, named by its variable
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB",
    "EVENT_RELAY_LISTEN_SWEEP_SECONDS",  # next to where they are read
    "EVENT_RELAY_LISTEN_MIN_INTERVAL_SECONDS",
}


def settings_started_with(
    variables: dict[str, str], code: str = "import petpro_booking.settings.base"
) -> subprocess.CompletedProcess:
    """The settings imported (`code` run) in a new process with these environment variables."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_are_in_range() -> None:
    assert base.numbers_out_of_range(vars(base)) == []


def test_every_number_read_from_the_environment_has_a_range() -> None:
    read = set(re.findall(r'env\.(?:int|float)\(\s*"([A-Z_0-9]+)"', BASE_SOURCE))
    ranged = {*base._ZERO_OR_MORE, *base._ABOVE_ZERO, *base._BEAT_INTERVALS, *CHECKED_ELSEWHERE}
    assert read - ranged == set(), "give each new numeric setting a range in settings/base.py"
    assert ranged - read == set(), "a range names a variable the settings do not read"


@pytest.mark.parametrize(
    ("variables", "messages"),
    [
        (
            {"RESERVATION_TTL_SECONDS": "-600"},
            ["RESERVATION_TTL_SECONDS must be above 0, not -600."],
        ),
        ({"ERASURE_RESUME_AFTER_SECONDS": "0"}, ["ERASURE_RESUME_AFTER_SECONDS must be above 0"]),
        ({"LOCK_WAIT_SECONDS": "-0.5"}, ["LOCK_WAIT_SECONDS must be 0 or more, not -0.5."]),
        (
            {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "2", "SEARCH_WARM_INTERVAL_SECONDS": "0"},
            [
                "DB_POOL_MAX_SIZE must be at least DB_POOL_MIN_SIZE.",
                "SEARCH_WARM_INTERVAL_SECONDS must be above 0, not 0.0.",
            ],
        ),
        (
            {"CELERY_TASK_SOFT_TIME_LIMIT": "150", "CELERY_TASK_TIME_LIMIT": "120"},
            ["CELERY_TASK_TIME_LIMIT must be above CELERY_TASK_SOFT_TIME_LIMIT."],
        ),
        ({"AXES_COOLOFF_MINUTES": "-1"}, ["AXES_COOLOFF_MINUTES must be above 0, not -1."]),
    ],
)
def test_a_number_out_of_range_is_refused_at_start_with_its_name(variables, messages) -> None:
    result = settings_started_with(variables)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    for message in messages:
        assert message in result.stderr


def test_zero_where_zero_turns_a_feature_off_is_accepted() -> None:
    result = settings_started_with(
        {
            "SLOT_SEARCH_CACHE_SECONDS": "0",
            "LOCK_WAIT_SECONDS": "0",
            "PAYMENT_MAX_RETRIES": "0",
            "BOOKING_MIN_NOTICE_MINUTES": "0",
            "CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB": "0",
        }
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "RESERVATION_TTL_SECONDS",
            "10m",
            "RESERVATION_TTL_SECONDS must be a whole number, not '10m'.",
        ),
        (
            "FAIR_USE_MAX_LIVE_HOLDS",
            "5.5",
            "FAIR_USE_MAX_LIVE_HOLDS must be a whole number, not '5.5'.",
        ),
        ("LOCK_WAIT_SECONDS", "five", "LOCK_WAIT_SECONDS must be a number, not 'five'."),
        # django-environ dropped the letters and read 5.0 (and "1e3" as 13.0).
        ("LOCK_WAIT_SECONDS", "5s", "LOCK_WAIT_SECONDS must be a number, not '5s'."),
        ("AXES_COOLOFF_MINUTES", "15m", "AXES_COOLOFF_MINUTES must be a number, not '15m'."),
    ],
)
def test_a_number_that_cannot_be_read_is_refused_with_its_name(variable, value, message) -> None:
    # Before, a bare ValueError ("invalid literal for int() with base 10: '10m'") named no
    # variable.
    result = settings_started_with({variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


def test_a_number_in_scientific_notation_is_read_as_written() -> None:
    result = settings_started_with(
        {"LOCK_WAIT_SECONDS": "1e3"},
        "import petpro_booking.settings.base as s; print(s.LOCK_WAIT_SECONDS)",
    )
    assert result.stdout.strip() == "1000.0", result.stderr  # was 13.0
