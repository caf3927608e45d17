"""Index changes on busy tables, for migrations on PostgreSQL: built and dropped CONCURRENTLY, so
holds and bookings go on meanwhile (a plain CREATE INDEX blocks every write to the table for
the whole build), and safe to run again after a stop. A migration that uses them sets
`atomic = False` (CONCURRENTLY cannot run in a transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations, models, router
from django.db.migrations.operations.base import Operation
from django.db.migrations.operations.special import SeparateDatabaseAndState


def column_indexes(schema_editor: Any, *, table: str, column: str) -> dict[str, dict[str, Any]]:
    """The indexes (and the unique constraints' indexes) on exactly `column` of `table`, by
    name, as Django's introspection describes them (`unique`, `index`, ...)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        name: info
        for name, info in constraints.items()
        if info["columns"] == [column] and (info["index"] or info["unique"])
    }


def create_index_concurrently(
    schema_editor: Any, *, name: str, table: str, column: str, unique: bool = False
) -> None:
    """CREATE [UNIQUE] INDEX CONCURRENTLY `name`, unless a valid one exists. A build that was
    stopped leaves an INVALID index of that name behind (PostgreSQL keeps it and maintains it on
    every write, but never reads it): that one is dropped and built again."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            [name],
        )
        found = cursor.fetchone()
    if found is not None and found[0]:
        return
    if found is not None:
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    kind = "UNIQUE INDEX" if unique else "INDEX"
    schema_editor.execute(f'CREATE {kind} CONCURRENTLY "{name}" ON "{table}" ("{column}")')


def drop_index_concurrently(schema_editor: Any, name: str) -> None:
    schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class ConcurrentlyOnPostgreSQL(SeparateDatabaseAndState):
    """`operations` as usual for the migration state, and for the database everywhere but on
    PostgreSQL, where `postgresql(schema_editor)` makes the same change without blocking writes
    (with the helpers above). Reversed with the plain `operations` everywhere."""

    def __init__(self, operations: list[Operation], postgresql: Callable[[Any], None]) -> None:
        super().__init__(database_operations=operations, state_operations=operations)
        self.postgresql = postgresql

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__qualname__,
            [],
            {"operations": self.state_operations, "postgresql": self.postgresql},
        )

    def database_forwards(self, app_label: str, schema_editor: Any, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            if router.allow_migrate(schema_editor.connection.alias, app_label):
                self.postgresql(schema_editor)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return "; ".join(operation.describe() for operation in self.state_operations)


def add_index_concurrently(*, model_name: str, table: str, column: str, name: str) -> Operation:
    """An AddIndex of a plain index on one column that PostgreSQL builds CONCURRENTLY (and
    builds again, if a stop left it INVALID)."""

    def on_postgresql(schema_editor: Any) -> None:
        create_index_concurrently(schema_editor, name=name, table=table, column=column)

    index = models.Index(fields=[column], name=name)
    return ConcurrentlyOnPostgreSQL(
        [migrations.AddIndex(model_name=model_name, index=index)], postgresql=on_postgresql
    )
