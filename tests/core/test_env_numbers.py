"""Numbers read from the environment outside Django's settings (gunicorn's configuration, the
metrics exporter, the tracer) stop the process under the variable's name when they are not a
number or out of range: a bare `float('5s')` named no variable, and
DB_POOL_METRICS_INTERVAL_SECONDS=0 made the pool sampler loop without a pause."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from petpro_booking.core.env_numbers import BadNumber, env_number

ROOT = Path(__file__).resolve().parents[2]


def test_unset_or_empty_is_the_default_and_a_number_is_read(monkeypatch) -> None:
    monkeypatch.delenv("PP_TEST_NUMBER", raising=False)
    assert env_number("PP_TEST_NUMBER", 7) == 7
    monkeypatch.setenv("PP_TEST_NUMBER", "  ")
    assert env_number("PP_TEST_NUMBER", 7) == 7
    monkeypatch.setenv("PP_TEST_NUMBER", " 12 ")
    assert env_number("PP_TEST_NUMBER", 7) == 12
    monkeypatch.setenv("PP_TEST_NUMBER", "0.25")
    assert env_number("PP_TEST_NUMBER", 1.0, kind=float, maximum=1.0) == 0.25


@pytest.mark.parametrize(
    ("raw", "options", "message"),
    [
        ("5s", {"kind": float}, "PP_TEST_NUMBER must be a number, not '5s'."),
        ("2.5", {}, "PP_TEST_NUMBER must be a whole number, not '2.5'."),
        ("nan", {"kind": float}, "PP_TEST_NUMBER must be a finite number, not 'nan'."),
        ("inf", {"kind": float}, "PP_TEST_NUMBER must be a finite number, not 'inf'."),
        ("-1", {}, "PP_TEST_NUMBER must be at least 0, not -1."),
        ("0", {"minimum": 1}, "PP_TEST_NUMBER must be at least 1, not 0."),
        ("0", {"kind": float, "above_minimum": True}, "PP_TEST_NUMBER must be above 0, not 0."),
        ("70000", {"maximum": 65535}, "PP_TEST_NUMBER must be at most 65535, not 70000."),
    ],
)
def test_a_value_that_cannot_be_used_is_refused_with_its_name(
    monkeypatch, raw, options, message
) -> None:
    monkeypatch.setenv("PP_TEST_NUMBER", raw)
    with pytest.raises(BadNumber) as refused:
        env_number("PP_TEST_NUMBER", 1, **options)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("code", "variable", "value", "message"),
    [
        (
            "import runpy; runpy.run_path('petpro_booking/gunicorn_conf.py')",
            "GUNICORN_WORKERS",
            "two",
            "GUNICORN_WORKERS must be a whole number, not 'two'.",
        ),
        (
            "import runpy; runpy.run_path('petpro_booking/gunicorn_conf.py')",
            "GUNICORN_THREADS",
            "0",
            "GUNICORN_THREADS must be at least 1, not 0.",
        ),
        (
            "import petpro_booking.core.metrics_export",
            "DB_POOL_METRICS_INTERVAL_SECONDS",
            "0",
            "DB_POOL_METRICS_INTERVAL_SECONDS must be above 0, not 0.",
        ),
        (
            "from petpro_booking.events.management.commands.outbox import serve_metrics;"
            " serve_metrics('RELAY_METRICS_PORT')",
            "RELAY_METRICS_PORT",
            "x",
            "RELAY_METRICS_PORT must be a whole number, not 'x'.",
        ),
        (
            "from petpro_booking.core.tracing import sampler_from_env; sampler_from_env()",
            "OTEL_TRACES_SAMPLER_ARG",
            "1.5",
            "OTEL_TRACES_SAMPLER_ARG must be at most 1, not 1.5.",
        ),
    ],
)
def test_the_processes_refuse_a_bad_number_at_start(code, variable, value, message) -> None:
    env = {**os.environ, variable: value, "DJANGO_SETTINGS_MODULE": "petpro_booking.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"BadNumber: {message}" in result.stderr


def test_no_process_reads_a_number_from_the_environment_with_a_bare_cast() -> None:
    bare = re.compile(r"\b(?:int|float)\(\s*os\.(?:environ|getenv)")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in (
            "petpro_booking",
            "slots",
            "reservations",
            "bookings",
            "integrations",
            "waitlist",
        )
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == [], "read it with petpro_booking.core.env_numbers.env_number"


def test_a_bad_metrics_port_stops_the_celery_worker(monkeypatch) -> None:
    # Celery logs and ignores an Exception from a signal receiver; the worker would have run
    # without its /metrics. SystemExit goes through.
    from celery import signals

    import petpro_booking.core.metrics_export  # noqa: F401  (connects the receivers)

    monkeypatch.setenv("CELERY_METRICS_PORT", "99999")
    with pytest.raises(SystemExit) as stopped:
        signals.worker_init.send(sender=None)
    assert str(stopped.value) == "CELERY_METRICS_PORT must be at most 65535, not 99999."
