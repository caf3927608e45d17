"""Right to erasure reaches the event archive: the day files the retention job wrote
(RETENTION_EVENTS_ARCHIVE_DIR) are rewritten so that a person's archived events say what the
event store says after the erasure (the same pseudonyms, names and reasons tombstoned); a
bystander's events stay as they were; the retention job and the rewrite never write at once;
a rewrite that stops leaves the archive as it was and is done again; a run that stops among
its renames is finished by the next one."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from bookings.models import PersonErasure
from bookings.personal_data_archive import person_archive_erase
from petpro_booking.core import crypto
from petpro_booking.events import retention
from petpro_booking.events.models import Event
from petpro_booking.events.retention import (
    ARCHIVE_FIELDS,
    archive_lock,
    archive_rows,
    events_purge_published,
)

from .conftest import OWNER_REASON, PERSONAL_VALUES, PET_NAME, STAFF_REASON
from .test_retention import months_ago, old_events

pytestmark = pytest.mark.django_db(transaction=True)


def archive_everything(directory: Path) -> dict[str, dict]:
    """Every event of the store into day files, as the retention job writes them; the rows
    by event id."""
    rows = list(Event.objects.order_by("id").values(*ARCHIVE_FIELDS))
    assert archive_rows(rows, str(directory)) == len(rows)
    return {str(row["event_id"]): row for row in read_archive(directory)}


def read_archive(directory: Path) -> list[dict]:
    return [row for path in sorted(directory.glob("events-*.jsonl.gz")) for row in _rows(path)]


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        return [json.loads(line) for line in archive if line.strip()]


def archive_text(directory: Path) -> str:
    return json.dumps(read_archive(directory), ensure_ascii=False)


def erase(user_id: str) -> dict:
    out = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

    call_command("erase_person", user_id, "--by", "agent-7", stdout=Out())
    return json.loads("".join(out))


def test_the_erasure_rewrites_the_archive_as_it_rewrote_the_event_store(person, settings, tmp_path):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    before = archive_everything(tmp_path)
    in_events = [value for value in PERSONAL_VALUES if value in archive_text(tmp_path)]
    assert set(in_events) >= {"owner-1", "pet-1", PET_NAME, OWNER_REASON, STAFF_REASON}
    bystanders = {
        event_id: row
        for event_id, row in before.items()
        if "owner-1" not in json.dumps(row) and "pet-1" not in json.dumps(row)
    }
    assert any("owner-2" in json.dumps(row) for row in bystanders.values())

    answer = erase("owner-1")

    text = archive_text(tmp_path)
    for value in PERSONAL_VALUES:
        assert value not in text, value
    after = {row["event_id"]: row for row in read_archive(tmp_path)}
    assert after.keys() == before.keys()  # every event stays, only what names them changes
    for event_id, row in bystanders.items():
        assert after[event_id] == row, event_id
    # Each archived event now reads as the event store's copy of it after the erasure.
    stored = {
        str(e["event_id"]): e for e in Event.objects.values("event_id", "payload", "metadata")
    }
    for event_id, row in after.items():
        assert (row["payload"], row["metadata"]) == (
            stored[event_id]["payload"],
            stored[event_id]["metadata"],
        ), row["event_type"]
    audit = PersonErasure.objects.get()
    assert audit.pseudonym in text
    assert audit.archive_erased_at is not None
    assert audit.pet_keys == {}  # the pets' keyed hashes are not kept once used
    changed = sum(1 for event_id in before if before[event_id] != after[event_id])
    assert changed > 10
    assert audit.counts["archive_events"] == changed
    assert answer["archive"] == {"erasures": 1, "files": 1, "events": changed}

    # Done once: a second run has nothing to do and writes nothing.
    mtimes = {path: path.stat().st_mtime_ns for path in tmp_path.glob("events-*")}
    assert person_archive_erase() == {"erasures": 0, "files": 0, "events": 0}
    assert {path: path.stat().st_mtime_ns for path in tmp_path.glob("events-*")} == mtimes


def test_the_archive_is_rewritten_after_the_keys_rotated(person, settings, tmp_path):
    """The erasure's process may have no archive (a web pod): the person waits for the hourly
    job of the worker that has it. The audit row keeps their hash under the key of the day;
    after a rotation the archive's ids are hashed under every configured key."""
    from bookings.tasks import erasure_archive

    settings.ANALYTICS_PSEUDONYM_KEYS = ["key-of-the-erasure"]
    crypto.reset_keys()
    try:
        settings.RETENTION_EVENTS_ARCHIVE_DIR = ""  # the erasure's process has no archive
        archive_everything(tmp_path)
        assert erase("owner-1")["archive"]["erasures"] == 0
        assert PersonErasure.objects.get().archive_erased_at is None  # waits for one that has

        settings.ANALYTICS_PSEUDONYM_KEYS = ["key-after-rotation", "key-of-the-erasure"]
        crypto.reset_keys()
        settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
        done = erasure_archive.apply().get()  # the beat job, as the worker runs it
    finally:
        crypto.reset_keys()
    assert done["erasures"] == 1
    assert done["events"] > 10
    for value in PERSONAL_VALUES:
        assert value not in archive_text(tmp_path), value
    assert PersonErasure.objects.get().archive_erased_at is not None


def test_an_event_only_in_the_archive_is_found_and_its_pet_gets_a_pseudonym(
    person, settings, tmp_path
):
    """A pet the event store no longer shows (its events already archived and dropped) still
    leaves no id in the archive: it gets a pseudonym of its own under the person's."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    archive_everything(tmp_path)
    old_pet = {
        "id": 1,
        "event_id": "6f1c9f57-5d55-4c1c-9a54-0b3c1f7c1a01",
        "aggregate_type": "reservation",
        "aggregate_id": "7d2e1a40-0000-4000-8000-000000000001",
        "aggregate_version": 1,
        "event_type": "ReservationCreated",
        "payload": {"user_id": "owner-1", "pet_id": "pet-old", "pet_name": "Old Rex"},
        "metadata": {"actor": {"type": "user", "id": "owner-1"}},
        "created_at": dt.datetime(2024, 1, 5, 9, tzinfo=dt.UTC),
        "published_at": dt.datetime(2024, 1, 5, 9, tzinfo=dt.UTC),
    }
    archive_rows([old_pet], str(tmp_path))

    erase("owner-1")

    (archived,) = [r for r in read_archive(tmp_path) if r["event_id"] == old_pet["event_id"]]
    audit = PersonErasure.objects.get()
    alias = f"{audit.pseudonym}-a{crypto.owner_key('pet-old').split('.')[1][:12]}"
    assert archived["payload"] == {
        "user_id": audit.pseudonym,
        "pet_id": alias,  # the same in every run: derived from the pet's keyed hash
        "pet_name": "[erased]",
    }
    assert archived["metadata"] == {"actor": {"type": "user", "id": audit.pseudonym}}


def test_a_rewrite_that_stops_leaves_the_old_file_and_runs_again(
    person, settings, tmp_path, monkeypatch
):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
    archive_everything(tmp_path)
    erase("owner-1")
    (day_file,) = tmp_path.glob("events-*.jsonl.gz")
    original = day_file.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    monkeypatch.setattr(retention.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        person_archive_erase()
    assert day_file.read_bytes() == original  # the old file, whole
    audit = PersonErasure.objects.get()
    assert audit.archive_erased_at is None
    assert audit.pet_keys  # still needed by the next run

    monkeypatch.undo()
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    assert person_archive_erase()["erasures"] == 1
    for value in PERSONAL_VALUES:
        assert value not in archive_text(tmp_path), value


def test_the_command_says_the_erasure_is_done_when_only_its_archive_pass_failed(
    person, settings, tmp_path, monkeypatch
):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    archive_everything(tmp_path)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(retention.os, "fsync", disk_full)
    answer = erase("owner-1")
    assert answer["archive"]["error"].startswith("OSError")
    assert answer["pseudonym"] == PersonErasure.objects.get().pseudonym
    assert PersonErasure.objects.get().archive_erased_at is None  # the hourly job retries


def test_an_unreadable_day_file_keeps_the_erasures_pending_and_the_archive_as_it_was(
    person, settings, tmp_path
):
    """A day file cut short (a disk that filled while the SQLite path appended to it) may
    name the person, and what it says about them (their pets, their holds) is what the other
    files' events need: nothing is rewritten, the erasure stays pending and is said again
    every run, until an operator repairs or removes the file."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    archive_everything(tmp_path)
    (good,) = tmp_path.glob("events-*.jsonl.gz")
    before = good.read_bytes()
    broken = tmp_path / "events-2024-01-05.jsonl.gz"
    whole = gzip.compress(('{"event_id": "x", "payload": {"user_id": "owner-1"}}\n' * 200).encode())
    broken.write_bytes(whole[: len(whole) // 2])

    answer = erase("owner-1")

    assert answer["archive"]["unreadable_files"] == 1
    assert broken.read_bytes() == whole[: len(whole) // 2]
    assert good.read_bytes() == before
    assert PersonErasure.objects.get().archive_erased_at is None
    assert not list(tmp_path.glob("*.rewrite"))

    broken.unlink()  # the operator's repair
    assert person_archive_erase()["erasures"] == 1
    assert PersonErasure.objects.get().archive_erased_at is not None
    for value in PERSONAL_VALUES:
        assert value not in archive_text(tmp_path), value


def test_a_line_that_is_not_an_event_counts_as_an_unreadable_file(person, settings, tmp_path):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    archive_everything(tmp_path)
    (tmp_path / "events-2024-01-06.jsonl.gz").write_bytes(gzip.compress(b"[1, 2]\n"))
    assert erase("owner-1")["archive"]["unreadable_files"] == 1
    assert PersonErasure.objects.get().archive_erased_at is None


def test_a_run_stopped_among_its_renames_is_finished_by_the_next_one(
    person, settings, tmp_path, monkeypatch
):
    """The first file renamed, the second not (the process killed between them): the next run
    no longer sees the person's id in the first file, yet finds them by their pseudonym there,
    so the second file's events of their holds are scrubbed with the same pet pseudonyms."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
    archive_everything(tmp_path)
    later_day = {
        "id": 2,
        "event_id": "6f1c9f57-5d55-4c1c-9a54-0b3c1f7c1a02",
        "aggregate_type": "booking",
        "aggregate_id": str(person.bookings["completed"].id),
        "aggregate_version": 99,
        "event_type": "BookingNoted",
        "payload": {"booking_id": str(person.bookings["completed"].id), "pet_id": "pet-1"},
        "metadata": {"actor": {"type": "staff", "id": "staff-9"}},
        "created_at": dt.datetime(2099, 1, 5, 9, tzinfo=dt.UTC),
        "published_at": dt.datetime(2099, 1, 5, 9, tzinfo=dt.UTC),
    }
    archive_rows([later_day], str(tmp_path))
    erase("owner-1")
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    real_replace, renamed = Path.replace, []

    def killed_after_one(self: Path, target):
        if renamed:
            raise KeyboardInterrupt  # stands for SIGKILL between two renames
        renamed.append(self)
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        person_archive_erase()
    monkeypatch.undo()
    assert len(renamed) == 1
    assert PersonErasure.objects.get().archive_erased_at is None

    assert person_archive_erase()["erasures"] == 1
    text = archive_text(tmp_path)
    for value in PERSONAL_VALUES:
        assert value not in text, value
    (noted,) = [r for r in read_archive(tmp_path) if r["event_id"] == later_day["event_id"]]
    stored = Event.objects.filter(
        payload__contains={"user_id": PersonErasure.objects.get().pseudonym}
    )
    pet_aliases = {e.payload["pet_id"] for e in stored if "pet_id" in e.payload}
    assert noted["payload"]["pet_id"] in pet_aliases  # the event store's pseudonym of pet-1
    assert noted["metadata"] == later_day["metadata"]  # staff-9 is not the person


def test_a_dropped_pseudonym_key_leaves_the_erasure_pending_and_the_archive_untouched(
    person, settings, tmp_path
):
    """The audit row holds the person's hash under the key of the day; with that key no
    longer configured nobody can be recognised: marked done, the archive would keep them."""
    settings.ANALYTICS_PSEUDONYM_KEYS = ["key-of-the-erasure"]
    crypto.reset_keys()
    try:
        settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
        archive_everything(tmp_path)
        erase("owner-1")
        before = {p: p.read_bytes() for p in tmp_path.glob("events-*")}
        settings.ANALYTICS_PSEUDONYM_KEYS = ["a-new-key-only"]
        crypto.reset_keys()
        settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
        assert person_archive_erase() == {
            "erasures": 0,
            "files": 0,
            "events": 0,
            "unknown_key": 1,
        }
    finally:
        crypto.reset_keys()
    assert {p: p.read_bytes() for p in tmp_path.glob("events-*")} == before
    assert PersonErasure.objects.get().archive_erased_at is None


def test_a_person_erased_twice_gets_the_first_erasures_pseudonyms(person, settings, tmp_path):
    """Support ran the erasure of an id again (nothing left to erase: a second audit row):
    the archive takes the pseudonyms the event store got, the first one's."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
    archive_everything(tmp_path)
    erase("owner-1")
    erase("owner-1")
    first, second = PersonErasure.objects.order_by("id")
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    assert person_archive_erase()["erasures"] == 2
    text = archive_text(tmp_path)
    assert first.pseudonym in text
    assert second.pseudonym not in text


def test_a_process_without_the_archive_directory_leaves_the_erasure_pending(
    person, settings, tmp_path
):
    """The variable set where the volume is not mounted (a shell on a web pod): no empty
    directory is made and nobody is marked done."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path / "not-mounted")
    erase("owner-1")
    assert not (tmp_path / "not-mounted").exists()
    assert PersonErasure.objects.get().archive_erased_at is None


def waits_for_the_archive_lock(directory: Path, job, while_held) -> list:
    """Run `job` in a thread while this test holds the archive lock: it must still be waiting
    after a second, when `while_held()` checks it wrote nothing; then it finishes. Returns
    what `job` returned."""
    results: list = []

    def run() -> None:
        try:
            results.append(job())
        finally:
            connections.close_all()

    with archive_lock(str(directory)):
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()
        while_held()
    thread.join(30)
    assert not thread.is_alive()
    assert results, "the job failed"
    return results


def test_the_rewrite_waits_for_the_retention_job(person, settings, tmp_path):
    """The other direction: while the retention job holds the archive lock, the erasure's
    rewrite waits and then rewrites what the job wrote too."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = ""
    erase("owner-1")
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)

    def nothing_marked() -> None:
        assert PersonErasure.objects.get().archive_erased_at is None

    (done,) = waits_for_the_archive_lock(tmp_path, person_archive_erase, nothing_marked)
    assert done["erasures"] == 1


def test_the_retention_job_waits_while_the_archive_is_being_rewritten(settings, tmp_path):
    """Both write the day files: the retention job's month waits for the archive lock (held
    here as the erasure's rewrite holds it), then is written whole."""
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    old_events(months_ago(15), 4, published=True)

    def no_line_written() -> None:
        assert not list(tmp_path.glob("events-*"))

    (report,) = waits_for_the_archive_lock(tmp_path, events_purge_published, no_line_written)
    assert report.archived == 4
    assert len(read_archive(tmp_path)) == 4


def test_the_batch_path_waits_for_the_lock_before_it_locks_any_event(settings, tmp_path):
    """The row-by-row path (SQLite, an unpartitioned table) takes the archive lock before its
    transaction: while it waits, no event it would claim is locked."""
    from django.db import connection

    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    old_events(months_ago(15), 3, published=True)
    cutoff = dt.datetime.now(dt.UTC)
    report = retention.PurgeReport()

    def no_event_locked() -> None:
        with connection.cursor() as cursor:  # would fail at once if the job held row locks
            cursor.execute(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE published_at IS NOT NULL"
                " FOR UPDATE NOWAIT) AS claimable"
            )
            assert cursor.fetchone()[0] >= 3

    waits_for_the_archive_lock(
        tmp_path,
        lambda: retention._purge_in_batches(cutoff, str(tmp_path), 100, report),
        no_event_locked,
    )
    assert report.archived == report.deleted >= 3


def test_the_worker_runs_the_archive_pass_every_hour(settings):
    from bookings.tasks import erasure_archive

    schedule = settings.CELERY_BEAT_SCHEDULE["erasure-archive"]
    assert schedule["task"] == erasure_archive.name == "bookings.erasure_archive"
    assert schedule["schedule"] <= 3600


def test_erase_person_shows_its_progress_on_stderr_and_keeps_stdout_json(
    person, settings, tmp_path
):
    settings.RETENTION_EVENTS_ARCHIVE_DIR = str(tmp_path)
    archive_everything(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    call_command("erase_person", "owner-1", "--by", "agent-7", stdout=out, stderr=err)
    assert json.loads(out.getvalue())["archive"]["erasures"] == 1
    shown = err.getvalue().splitlines()
    assert "cancelling future bookings: 2/2 (100%)" in shown
    assert "releasing holds: 1/1 (100%)" in shown
    assert "event archive, reading: 1/1 (100%)" in shown
    assert "event archive, rewriting: 1/1 (100%)" in shown
