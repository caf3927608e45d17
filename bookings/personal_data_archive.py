"""Erasure in the event archive: the day files the retention job wrote
(RETENTION_EVENTS_ARCHIVE_DIR) rewritten so that an erased person's archived events say what
the event store says after `person_erase` (docs/security.md, "Right to erasure").

The archive holds raw ids; the audit row (`PersonErasure`) only keyed hashes: the person's
`subject_key` and their pets' `pet_keys`. A run finds each pending person by hashing the ids
the archive names, learns their pets, pet names and aggregates from the events that name them
as the owner, then writes every changed day file beside the old one and renames them all
only when every one is written (a run that stops before leaves the archive as it was). Only
then are the erasures marked done.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from petpro_booking.core.crypto import owner_key, pseudonym_key_ids
from petpro_booking.core.progress import progress
from petpro_booking.events.retention import (
    REWRITE,
    archive_commit,
    archive_day_files,
    archive_lock,
    archive_read,
    archive_write_beside,
)

from .models import PersonErasure
from .personal_data import ERASED, PET_KEYS, USER_KEYS, Replacements, scrub

logger = logging.getLogger(__name__)

UNREADABLE = (OSError, EOFError, ValueError, zlib.error)


class ArchiveUnreadable(Exception):
    """A day file that cannot be read to its end (cut short, damaged, a line not an event)."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


@dataclass
class _Archived:
    """An erased person as the archive names them (their raw id, or the pseudonym a row an
    earlier run rewrote carries), and what the first pass found in the events that name them
    as the owner."""

    erasure: PersonErasure
    ids: set[str] = field(default_factory=set)
    pets: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    aggregates: set[str] = field(default_factory=set)
    events: int = 0  # changed by the second pass


def _ids_under(value: Any, keys: frozenset[str], key: str | None = None) -> Iterator[str]:
    """Every string (or number) under one of `keys`, at any depth of a JSON value."""
    if isinstance(value, dict):
        for k, item in value.items():
            yield from _ids_under(item, keys, k)
    elif isinstance(value, list):
        for item in value:
            yield from _ids_under(item, keys, key)
    elif key in keys and isinstance(value, str | int) and not isinstance(value, bool):
        yield str(value)


def _people_named(row: dict[str, Any]) -> set[str]:
    """The ids of people an archived event names: under a user key of its payload, or as the
    actor of its metadata."""
    named = set(_ids_under(row.get("payload"), USER_KEYS))
    actor = (row.get("metadata") or {}).get("actor")
    if isinstance(actor, dict) and isinstance(actor.get("id"), str):
        named.add(actor["id"])
    return named


def _owner_of(row: dict[str, Any]) -> str | None:
    payload = row.get("payload")
    owner = payload.get("user_id") if isinstance(payload, dict) else None
    return None if owner is None or isinstance(owner, bool) else str(owner)


def _aggregate_of(row: dict[str, Any]) -> str | None:
    aggregate = row.get("aggregate_id")
    return None if aggregate is None else str(aggregate)


def _by_keyed_hash(value: str, table: dict[str, Any]) -> Any:
    """`table`'s entry for the keyed hash of `value` under any configured pseudonym key (an
    audit row made before a key rotation holds the older key's hash), else None."""
    for index in range(len(pseudonym_key_ids())):
        hashed = owner_key(value, key_index=index)
        if hashed in table:
            return table[hashed]
    return None


def _find(files: Iterable[Path], pending: list[PersonErasure]) -> dict[int, _Archived]:
    """The first pass: every pending erasure whose person the archive names, by the audit
    row's id. Two erasures of one person (support erased an id again): the first one's
    pseudonyms, as in the event store. Raises UNREADABLE for a file it cannot read."""
    by_key: dict[str, PersonErasure] = {}
    for erasure in pending:  # oldest first
        by_key.setdefault(erasure.subject_key, erasure)
    by_pseudonym = {erasure.pseudonym: erasure for erasure in pending}
    erasure_of: dict[str, PersonErasure | None] = {}
    found: dict[int, _Archived] = {}
    for path in files:
        try:
            rows = list(archive_read(path))
        except UNREADABLE as exc:
            raise ArchiveUnreadable(path) from exc
        for row in rows:
            owner = _owner_of(row)
            for named in _people_named(row):
                if named not in erasure_of:
                    erasure_of[named] = by_pseudonym.get(named) or _by_keyed_hash(named, by_key)
                whose = erasure_of[named]
                if whose is None:
                    continue
                person = found.setdefault(whose.pk, _Archived(whose))
                if named != whose.pseudonym:
                    person.ids.add(named)
                if named != owner:
                    continue  # their act on someone else's booking, not one of theirs
                if (aggregate := _aggregate_of(row)) is not None:
                    person.aggregates.add(aggregate)
                payload = row.get("payload") or {}
                person.pets.update(_ids_under(payload, PET_KEYS))
                names = _ids_under(payload, frozenset({"pet_name"}))
                person.names.update(name for name in names if name != ERASED)
    return found


def _pet_alias(pet_id: str, erasure: PersonErasure) -> str | None:
    """The pseudonym of one of the person's pets: the event store's (`pet_keys`), or for a pet
    the store never saw (its events only in the archive, or an erasure made before the hashes
    were kept) one derived from the keyed hash of its id, the same in every run. None for a
    value that already is one of the person's pseudonyms."""
    if pet_id.startswith(f"{erasure.pseudonym}-"):
        return None
    known = _by_keyed_hash(pet_id, erasure.pet_keys or {})
    if known:
        return known
    # Under the erasure's own key (configured: see `usable`), so a rotation between two runs
    # does not change it.
    key_index = pseudonym_key_ids().index(erasure.subject_key[:8])
    return f"{erasure.pseudonym}-a{owner_key(pet_id, key_index=key_index).split('.')[1][:12]}"


def _replacements(person: _Archived, extra_pets: set[str] | None = None) -> Replacements:
    pets = {}
    for pet_id in person.pets | (extra_pets or set()):
        alias = _pet_alias(pet_id, person.erasure)
        if alias is not None:
            pets[pet_id] = alias
    user = dict.fromkeys(person.ids, person.erasure.pseudonym)
    return Replacements(user=user, pets=pets, names=person.names)


def _scrub_file(path: Path, found: dict[int, _Archived]) -> Path | None:
    """The second pass, one day file: each event that names an erased person or is one of
    theirs (of their holds or bookings, or naming them as the owner) scrubbed as
    `person_erase` scrubs the event store. A pet id in an event of theirs is one of their pets
    even where no event naming them said so (a file an earlier run rewrote no longer does).
    The new content written beside the file when any event changed; its path, else None."""
    replacements = {pk: _replacements(person) for pk, person in found.items()}
    rows, changed = [], False
    for row in archive_read(path):
        named, aggregate, owner = _people_named(row), _aggregate_of(row), _owner_of(row)
        scrubbed = row
        for pk, person in found.items():
            known_as = person.ids | {person.erasure.pseudonym}
            theirs = owner in known_as or (aggregate is not None and aggregate in person.aggregates)
            if not theirs and not named & known_as:
                continue
            rule = replacements[pk]
            if theirs and (pets := set(_ids_under(row.get("payload"), PET_KEYS)) - person.pets):
                rule = _replacements(person, pets)
            before, scrubbed = (
                scrubbed,
                {
                    **scrubbed,
                    "payload": scrub(scrubbed.get("payload"), rule),
                    "metadata": scrub(scrubbed.get("metadata"), rule),
                },
            )
            if scrubbed != before:
                person.events += 1
        changed |= scrubbed != row
        rows.append(scrubbed)
    return archive_write_beside(path, rows) if changed else None


def person_archive_erase(*, progress_to: Any = None) -> dict[str, int]:
    """Take every erased person out of the event archive as `person_erase` took them out of
    the event store: each archived event that names them, and each event of their holds and
    bookings, rewritten with their id and their pets' ids replaced by the same pseudonyms and
    names, reasons and contact data tombstoned. The events stay, so the archive still says
    what happened.

    Under `archive_lock` (the retention job waits meanwhile). Every changed day file is
    written beside the old one first; only when all are written are they renamed over the old
    ones and the directory flushed, and only then are the erasures marked done (and their pet
    hashes emptied). A run that stops before the renames (a full disk, a crash) leaves the
    archive as it was and the erasures pending; one that stops among the renames is finished
    by the next run, which knows the person also by their pseudonym. Left pending, said as an
    error on every run: all of them while a day file cannot be read (it may name them), and an
    erasure whose key is no longer configured (its person cannot be recognised). A process
    without the archive directory (a web pod) leaves them to the worker that has it.
    `progress_to`: a stream shown how far each pass over the files is."""
    done = {"erasures": 0, "files": 0, "events": 0}
    directory = settings.RETENTION_EVENTS_ARCHIVE_DIR
    if not directory or not Path(directory).is_dir():
        return done
    if not PersonErasure.objects.filter(archive_erased_at__isnull=True).exists():
        return done
    with archive_lock(directory) as target:
        pending = list(
            PersonErasure.objects.filter(archive_erased_at__isnull=True).order_by("id")
        )  # read again under the lock: another run may have finished them
        key_ids = set(pseudonym_key_ids())
        usable = [erasure for erasure in pending if erasure.subject_key[:8] in key_ids]
        if len(usable) < len(pending):
            done["unknown_key"] = len(pending) - len(usable)
            logger.error(
                "%d erasure(s) left pending: their pseudonym key is no longer configured "
                "(keep it in ANALYTICS_PSEUDONYM_KEYS until their archive pass is done)",
                done["unknown_key"],
            )
        files = archive_day_files(target)

        def shown(description: str) -> Iterable[Path]:
            if progress_to is None:
                return files
            return progress(files, description=description, stream=progress_to)

        try:
            found = _find(shown("event archive, reading"), usable)
        except ArchiveUnreadable as exc:
            logger.error(
                "event archive: %s cannot be read (%r); every erasure is left pending until "
                "it is repaired or removed",
                exc.path,
                exc.__cause__,
            )
            done["unreadable_files"] = 1
            return done
        written: list[Path] = []
        try:
            for path in shown("event archive, rewriting") if found else []:
                if (new := _scrub_file(path, found)) is not None:
                    written.append(new)
        except BaseException:  # nothing renamed yet: the archive stays as it was
            for leftover in [*written, *target.glob("*" + REWRITE)]:
                leftover.unlink(missing_ok=True)
            raise
        archive_commit(written, target)
        finished = timezone.now()
        events = {pk: person.events for pk, person in found.items()}
        for erasure in usable:
            PersonErasure.objects.filter(pk=erasure.pk, archive_erased_at__isnull=True).update(
                archive_erased_at=finished,
                pet_keys={},
                counts={**erasure.counts, "archive_events": events.get(erasure.pk, 0)},
            )
    done.update(erasures=len(usable), files=len(written), events=sum(events.values()))
    logger.info("erased people taken out of the event archive: %s", done)
    return done
