"""Every list checks its page query as GET /slots does: 400 naming the field, never a silent
default (DRF used 20 for `page_size=abc` and cut 100000 to 100) or a 404 for `page=abc`."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

LISTS = ["/api/v1/bookings", "/api/v1/reservations", "/api/v1/waitlist", "/api/v1/clinics"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page=1000001", "page"),
        ("page_size=abc", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=100000", "page_size"),
        ("page_size=5.0", "page_size"),
        ("page=2.0", "page"),
        ("page=last", "page"),
    ],
)
def test_a_bad_page_query_is_400_naming_the_field(owner_client, path, query, field):
    response = owner_client.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == [field]


def test_good_pages_and_the_page_past_the_last(owner_client, clinic):
    first = owner_client.get("/api/v1/clinics?page=1&page_size=100")
    assert first.status_code == 200
    assert first.json()["count"] == 1
    empty = owner_client.get("/api/v1/clinics?page=&page_size=")  # empty: as if absent
    assert empty.status_code == 200
    assert empty.json()["count"] == 1
    past = owner_client.get("/api/v1/clinics?page=2&page_size=1")
    assert past.status_code == 404
    assert past.json()["error"]["code"] == "not_found"


def test_the_checked_page_size_is_the_one_used(owner_client, clinic):
    from ..factories import ClinicFactory

    ClinicFactory.create_batch(2)
    page = owner_client.get("/api/v1/clinics?page_size=2").json()
    assert (page["count"], len(page["results"])) == (3, 2)
    assert "page=2" in page["next"]
    second = owner_client.get("/api/v1/clinics?page_size=2&page=2").json()
    assert len(second["results"]) == 1


def test_the_schema_documents_the_bounds_every_list_checks(anon_client):
    # Without them a client generated from the schema (and schemathesis) took page_size=0 for
    # a valid request that the API then refused.
    schema = anon_client.get("/api/schema/?format=json").json()
    bounds = {"page": (1, 1_000_000), "page_size": (1, 100)}
    for path in LISTS:
        parameters = schema["paths"][path]["get"]["parameters"]
        found = {p["name"]: p["schema"] for p in parameters if p["name"] in bounds}
        assert found.keys() == bounds.keys(), path
        for name, (low, high) in bounds.items():
            assert (found[name]["minimum"], found[name]["maximum"]) == (low, high), (path, name)
