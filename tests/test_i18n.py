"""API error messages follow Accept-Language (en, id) with unchanged codes; the committed .mo
catalogues are what their .po files compile to (no GNU gettext needed on a fresh machine)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.utils import translation

from petpro_booking.core.catalogue import catalogues, mo_bytes, po_entries
from petpro_booking.core.errors import ApplicationError


def test_there_is_an_indonesian_catalogue():
    assert [p.parts[-3] for p in catalogues()] == ["id"]


@pytest.mark.parametrize("po", catalogues(), ids=lambda p: p.parts[-3])
def test_committed_mo_files_are_up_to_date(po: Path):
    compiled = mo_bytes(po_entries(po.read_text(encoding="utf-8")))
    assert po.with_suffix(".mo").read_bytes() == compiled, "run `make messages` and commit"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext not installed")
@pytest.mark.parametrize("po", catalogues(), ids=lambda p: p.parts[-3])
def test_our_compiler_agrees_with_msgfmt(po: Path, tmp_path):
    import gettext

    reference = tmp_path / "reference.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(reference), str(po)], check=True)
    ours = tmp_path / "ours.mo"
    ours.write_bytes(mo_bytes(po_entries(po.read_text(encoding="utf-8"))))
    with reference.open("rb") as a, ours.open("rb") as b:
        assert gettext.GNUTranslations(a)._catalog == gettext.GNUTranslations(b)._catalog


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_error_default_message_has_an_indonesian_translation():
    import bookings.errors  # noqa: F401  (these imports register the subclasses)
    import integrations.payments.gateway  # noqa: F401
    import petpro_booking.core.idempotency  # noqa: F401
    import reservations.errors  # noqa: F401
    import slots.errors  # noqa: F401
    import waitlist.errors  # noqa: F401

    untranslated = []
    with translation.override("id"):
        for error in _all_subclasses(ApplicationError):
            message = error.default_message
            if translation.gettext(message) == message:
                untranslated.append(f"{error.__name__}: {message}")
    assert untranslated == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message"),
    [("id", "Jadwal tidak ditemukan."), ("en", "No such slot."), ("fr", "No such slot.")],
)
def test_api_errors_follow_accept_language_and_keep_their_code(owner_client, language, message):
    response = owner_client.get(f"/api/v1/slots/{uuid.uuid4()}", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": message, "details": {}}


@pytest.mark.django_db
def test_validation_errors_in_indonesian(owner_client):
    english = owner_client.post("/api/v1/reservations", {}, format="json")
    indonesian = owner_client.post(
        "/api/v1/reservations", {}, format="json", HTTP_ACCEPT_LANGUAGE="id-ID,id;q=0.9"
    )
    assert english.status_code == indonesian.status_code == 400
    assert english.json()["error"]["code"] == indonesian.json()["error"]["code"]
    assert indonesian.json()["error"]["message"] == "Permintaan tidak valid."
    assert indonesian["Content-Language"] == "id"
    field = indonesian.json()["error"]["details"]["slot_id"][0]
    assert field != english.json()["error"]["details"]["slot_id"][0]  # DRF's own catalogue


@pytest.mark.django_db
def test_permission_messages_in_indonesian(staff_client):
    response = staff_client.post(
        "/api/v1/reservations", {}, format="json", HTTP_ACCEPT_LANGUAGE="id"
    )
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "permission_denied",
        "message": "Hanya pemilik hewan yang boleh melakukan ini.",
        "details": {},
    }


def _error_classes() -> set[str]:
    import bookings.errors  # noqa: F401  (these imports register the subclasses)
    import integrations.payments.gateway  # noqa: F401
    import petpro_booking.core.idempotency  # noqa: F401
    import reservations.errors  # noqa: F401
    import slots.errors  # noqa: F401
    import waitlist.errors  # noqa: F401

    return {error.__name__ for error in _all_subclasses(ApplicationError)} | {"ApplicationError"}


def _messages_raised() -> list[tuple[str, int, str | None]]:
    """(file, line, message) of every error built with a message written at the call: a
    string, or gettext("...") with placeholders; None where the message is an f-string."""
    import ast

    errors, found = _error_classes(), []
    root = Path(__file__).resolve().parent.parent
    for app in ("bookings", "reservations", "slots", "waitlist", "integrations", "petpro_booking"):
        for path in (root / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name not in errors or name == "DependencyUnavailable":  # its 1st: a name
                    continue
                message = node.args[0]
                if isinstance(message, ast.BinOp) and isinstance(message.op, ast.Mod):
                    message = message.left  # gettext("... %(x)s ...") % {...}
                if isinstance(message, ast.Call) and getattr(message.func, "id", "") == "gettext":
                    message = message.args[0]
                where = (str(path.relative_to(root)), node.lineno)
                if isinstance(message, ast.JoinedStr):
                    found.append((*where, None))
                elif isinstance(message, ast.Constant) and isinstance(message.value, str):
                    found.append((*where, message.value))
    return found


def test_every_message_raised_with_an_error_has_an_indonesian_translation():
    """The exception handler translates the message an error carries; one written as an
    f-string, or missing from the catalogue, reached Indonesian callers in English."""
    raised = _messages_raised()
    assert len(raised) > 40  # the scan sees the raise sites
    assert [(f, line) for f, line, message in raised if message is None] == []
    with translation.override("id"):
        untranslated = [
            (f, line, message)
            for f, line, message in raised
            if message is not None and translation.gettext(message) == message
        ]
    assert untranslated == []


@pytest.mark.django_db
def test_a_refusal_with_its_numbers_and_the_availability_reasons_in_indonesian(
    owner_client, clinic_service
):
    import datetime as dt

    from django.utils import timezone

    from slots.models import SlotStatus
    from tests.factories import SlotFactory

    started = SlotFactory(service=clinic_service, start_at=timezone.now() - dt.timedelta(hours=1))
    closed = SlotFactory(service=clinic_service, status=SlotStatus.CLOSED)
    answer = owner_client.get(f"/api/v1/slots/{started.id}/availability", HTTP_ACCEPT_LANGUAGE="id")
    assert answer.status_code == 200, answer.content
    (reason,) = [r for r in answer.json()["reasons"] if r["code"] == "slot_started"]
    assert reason["message"] == "Jadwal ini sudah dimulai."
    closed_answer = owner_client.get(
        f"/api/v1/slots/{closed.id}/availability", HTTP_ACCEPT_LANGUAGE="id"
    )
    codes = {r["code"]: r["message"] for r in closed_answer.json()["reasons"]}
    assert codes["slot_closed"] == "Klinik telah menutup jadwal ini."
    english = owner_client.get(f"/api/v1/slots/{closed.id}/availability")
    assert {r["code"]: r["message"] for r in english.json()["reasons"]}["slot_closed"] == (
        "The clinic has closed this slot."
    )
