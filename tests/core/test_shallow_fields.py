"""ShallowFieldsMixin: per-instance field copies without DRF's deep copy, same validation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.http import QueryDict
from rest_framework import serializers

from petpro_booking.core.fields import ShallowFieldsMixin
from slots.serializers import SlotSearchQuery


class _Body(ShallowFieldsMixin, serializers.Serializer):
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.CharField(max_length=3))


def test_each_instance_has_its_own_bound_fields_and_children_are_deep_copied():
    first, second = _Body(data={}), _Body(data={})
    assert first.fields["name"] is not second.fields["name"]
    assert first.fields["name"].parent is first
    assert second.fields["name"].parent is second
    assert first.fields["tags"].child is not second.fields["tags"].child
    assert first.fields["tags"].child.root is first  # its context is this serializer's


def test_validation_is_the_same_as_with_drfs_deep_copy_across_threads():
    good = QueryDict("clinic_id=c1&available=true&page_size=20&start_from=2027-01-01T09:00:00Z")
    bad = QueryDict("page_size=1000&start_from=yesterday&available=maybe")

    def check(index: int) -> tuple[bool, list[str]]:
        query = SlotSearchQuery(data=good if index % 2 else bad)
        valid = query.is_valid()
        return valid, sorted(query.errors) if not valid else sorted(query.validated_data)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(check, range(200)))
    assert results[1] == (
        True,
        ["available", "clinic_id", "include_unbookable", "page", "page_size", "start_from"],
    )
    assert results[0] == (False, ["available", "page_size", "start_from"])
    assert results == [results[i % 2] for i in range(200)]
    body = _Body(data={"name": "toolong", "tags": ["abcd"]})
    assert not body.is_valid()
    assert set(body.errors) == {"name", "tags"}
