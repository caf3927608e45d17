"""Model fields for personal data: text encrypted at rest and its keyed-hash lookup column."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models
from django.db.models.lookups import Exact

from . import crypto


class EmptyOnlyExact(Exact):
    """`= ""` works on ciphertext (empty stays empty); `= "text"` would silently match nothing
    (every token differs), so it is refused."""

    def get_prep_lookup(self):  # type: ignore[no-untyped-def]
        if self.rhs not in ("", None):
            raise FieldError(
                f"{self.lhs.target.name} is encrypted: filter on its lookup column, or compare "
                "after reading (decrypted)"
            )
        return super().get_prep_lookup()


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token (MultiFernet over FIELD_ENCRYPTION_KEYS, newest first).

    The empty string stays empty (nothing to hide, and "no reason given" stays cheap to tell).
    Tokens differ on every write, so the column cannot be filtered by value: search through a
    `LookupHashField`. Reads decrypt under any configured key; `manage.py reencrypt_fields`
    moves rows to the newest one."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_lookup(self, lookup_name: str):  # type: ignore[override]
        # Only "is the column empty / null" has a meaning on ciphertext.
        if lookup_name == "exact":
            return EmptyOnlyExact
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)


class LookupHashField(models.CharField):
    """HMAC-SHA256 (PERSONAL_DATA_LOOKUP_KEY) of another field of the same row, kept up to date
    whenever the row is written through the ORM or RowInserter (`pre_save`): an admin search by
    a pet's name or an owner's email matches the hash of the term, never the plaintext.

    Index it with a `models.Index` in the model's Meta, not `db_index`: only equality is ever
    asked of a hash, and on PostgreSQL `db_index` adds a second, `varchar_pattern_ops` index for
    LIKE that no query uses and every INSERT pays for (a hold's among them)."""

    def __init__(self, *args: Any, source: str = "", **kwargs: Any) -> None:
        self.source = source
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        value = crypto.lookup_hash(str(getattr(model_instance, self.source) or ""))
        setattr(model_instance, self.attname, value)
        return value


def encrypt_existing_rows(
    apps: Any, schema_editor: Any, *, model: str, fields: list[str], lookups: dict[str, str]
) -> None:
    """Migration step: encrypt the plaintext values of `fields` of every row of `model`
    ("app.Model") and fill the `lookups` columns (lookup column -> source field). Values that
    are already tokens are left alone, so the step can run twice."""
    historical = apps.get_model(model)
    table = schema_editor.quote_name(historical._meta.db_table)
    pk = schema_editor.quote_name(historical._meta.pk.column)
    columns = [schema_editor.quote_name(historical._meta.get_field(f).column) for f in fields]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {', '.join(columns)} FROM {table}")  # noqa: S608
        rows = cursor.fetchall()
        for row in rows:
            plain = dict(zip(fields, row[1:], strict=True))
            changes: dict[str, str] = {}
            for name, value in plain.items():
                if value and not str(value).startswith(crypto.TOKEN_PREFIX):
                    changes[name] = crypto.encrypt(str(value))
                elif value:
                    plain[name] = crypto.decrypt(str(value))
            for lookup, source in lookups.items():
                changes[lookup] = crypto.lookup_hash(str(plain.get(source) or ""))
            if not changes:
                continue
            assignments = ", ".join(
                f"{schema_editor.quote_name(historical._meta.get_field(n).column)} = %s"
                for n in changes
            )
            cursor.execute(
                f"UPDATE {table} SET {assignments} WHERE {pk} = %s",  # noqa: S608
                [*changes.values(), row[0]],
            )


# A row a writer holds locked is skipped and visited again, this many times this far apart.
REENCRYPT_LOCKED_ROUNDS = 50
REENCRYPT_LOCKED_PAUSE_SECONDS = 0.1


class RowsStillLocked(RuntimeError):
    """Rows a writer kept locked through every revisit: not re-encrypted yet."""


def reencrypt_model(model: type[models.Model], *, batch_size: int = 500) -> int:
    """Re-encrypt every encrypted column of `model` under the newest key and recompute its
    lookup hashes (so a new PERSONAL_DATA_LOOKUP_KEY takes effect too). Batches of rows, each
    in its own short transaction, rows locked with SKIP LOCKED where the database can, so the
    command never waits on, or deadlocks with, a writer. A row a writer holds is skipped, not
    forgotten: it is visited again after the pass (a writer that changes only its status
    leaves its old token behind). Raises RowsStillLocked when some stay locked through every
    revisit (the old key must not be dropped yet: run the command again). Returns rows
    rewritten."""
    import time

    from django.db import connection, transaction

    meta = model._meta
    encrypted = [f for f in meta.concrete_fields if isinstance(f, EncryptedTextField)]
    lookups = [f for f in meta.concrete_fields if isinstance(f, LookupHashField)]
    if not encrypted:
        return 0

    def quote(name: str | None) -> str:
        return connection.ops.quote_name(str(name))

    column_of = {f.name: f.column for f in meta.concrete_fields}
    table, pk = quote(meta.db_table), quote(meta.pk.column if meta.pk else "id")
    columns = ", ".join(quote(f.column) for f in encrypted)
    can_skip = connection.features.has_select_for_update_skip_locked
    skip_locked = " FOR UPDATE SKIP LOCKED" if can_skip else ""

    def rewrite(cursor: Any, rows: list[tuple]) -> int:
        # The batch's UPDATEs, by the columns they set, each set sent with executemany
        # (psycopg pipelines it: one round trip for the batch, not one per row).
        updates: dict[str, list[list[Any]]] = {}
        count = 0
        for row in rows:
            tokens = dict(zip((f.name for f in encrypted), row[1:], strict=True))
            changes = {name: crypto.reencrypt(token) for name, token in tokens.items() if token}
            for lookup in lookups:
                token = tokens.get(lookup.source)
                changes[lookup.name] = crypto.lookup_hash(crypto.decrypt(token) if token else "")
            if not changes:  # nothing stored in this row's encrypted columns
                continue
            assignments = ", ".join(f"{quote(column_of[n])} = %s" for n in changes)
            updates.setdefault(assignments, []).append([*changes.values(), row[0]])
            count += 1
        for assignments, params in updates.items():
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {pk} = %s",  # noqa: S608
                params,
            )
        return count

    def ids_in(cursor: Any, after: Any, through: Any | None) -> set:
        """Every id after `after` (up to `through`), locked or not: what SKIP LOCKED left out."""
        where = [f"{pk} > %s"] if after is not None else []
        params = [after] if after is not None else []
        if through is not None:
            where.append(f"{pk} <= %s")
            params.append(through)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        cursor.execute(f"SELECT {pk} FROM {table} {clause}", params)  # noqa: S608
        return {row[0] for row in cursor.fetchall()}

    rewritten, last, skipped = 0, None, set()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            where = "" if last is None else f"WHERE {pk} > %s"
            cursor.execute(
                f"SELECT {pk}, {columns} FROM {table} {where} "  # noqa: S608
                f"ORDER BY {pk} LIMIT %s{skip_locked}",
                ([] if last is None else [last]) + [batch_size],
            )
            rows = cursor.fetchall()
            if can_skip:
                through = rows[-1][0] if rows else None
                skipped |= ids_in(cursor, last, through) - {row[0] for row in rows}
            if not rows:
                break
            last = rows[-1][0]
            rewritten += rewrite(cursor, rows)
    for _ in range(REENCRYPT_LOCKED_ROUNDS):
        if not skipped:
            return rewritten
        time.sleep(REENCRYPT_LOCKED_PAUSE_SECONDS)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {pk}, {columns} FROM {table} WHERE {pk} = ANY(%s)"  # noqa: S608
                f" ORDER BY {pk}{skip_locked}",
                [list(skipped)],
            )
            rows = cursor.fetchall()
            rewritten += rewrite(cursor, rows)
            cursor.execute(
                f"SELECT {pk} FROM {table} WHERE {pk} = ANY(%s)",  # noqa: S608
                [list(skipped)],
            )
            still_there = {row[0] for row in cursor.fetchall()}  # a deleted row needs nothing
            skipped = still_there - {row[0] for row in rows}
    if skipped:
        raise RowsStillLocked(
            f"{len(skipped)} rows of {meta.db_table} stayed locked and were not re-encrypted "
            f"({rewritten} were); run the command again before dropping the old key."
        )
    return rewritten
