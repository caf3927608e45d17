"""The admin's searches compare each field by equality through an index (core/admin_search.py):
no search reads a whole table, whatever the term."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory

from petpro_booking.core.admin_search import IndexedSearchMixin

SEARCHING_ADMINS = [
    model_admin
    for model_admin in admin.site._registry.values()
    if isinstance(model_admin, IndexedSearchMixin)
]


def test_the_admins_of_the_big_tables_search_through_indexes():
    searched = {model_admin.model._meta.db_table for model_admin in SEARCHING_ADMINS}
    assert {"bookings", "reservations", "waitlist_entries", "events"} <= searched


@pytest.mark.django_db
@pytest.mark.parametrize("model_admin", SEARCHING_ADMINS, ids=lambda a: a.model.__name__)
@pytest.mark.parametrize(
    "term", ["5f0c8a52-9c1e-4d3b-8f2a-0e6b7c1d2e3f", "owner-1", "Biscuit the Brave", "ab12"]
)
def test_no_search_reads_a_whole_table(model_admin, term):
    found, may_have_duplicates = model_admin.get_search_results(
        RequestFactory().get("/"), model_admin.model._default_manager.all(), term
    )
    assert may_have_duplicates is False
    sql, params = found.query.sql_with_params()
    with connection.cursor() as cursor:
        # With sequential scans priced out, one is left only where no index can serve.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan


@pytest.mark.django_db
def test_a_term_a_field_cannot_hold_skips_that_field():
    events = next(a for a in SEARCHING_ADMINS if a.model._meta.db_table == "events")
    found, _ = events.get_search_results(
        RequestFactory().get("/"), events.model._default_manager.all(), "not-a-uuid " + "x" * 70
    )
    assert list(found) == []
