"""Issue 11 point 5: an uncached search page costs about what a bare DRF ModelSerializer list
of 20 costs. Both run in process through DRF's view machinery (no auth, no throttles, no
cache), on the same 60 slots, interleaved, best of several rounds."""

from __future__ import annotations

import time

import pytest
from rest_framework import generics, serializers
from rest_framework.test import APIRequestFactory

from petpro_booking.core.pagination import PagePagination
from slots.api import SlotViewSet
from slots.models import Slot

from ..factories import SlotFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


class BareSlotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Slot
        fields = [
            "id",
            "clinic_id",
            "service_id",
            "start_at",
            "end_at",
            "capacity",
            "booked_count",
            "held_count",
            "status",
            "version",
        ]


class BareSlotList(generics.ListAPIView):
    """The baseline: what a bare DRF project does for the same request."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    serializer_class = BareSlotSerializer
    pagination_class = PagePagination

    def get_queryset(self):
        params = self.request.query_params
        return Slot.objects.filter(
            clinic_id=params["clinic_id"], service_id=params["service_id"]
        ).order_by("start_at", "id")


class SearchOnly(SlotViewSet):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []


def per_request_ms(view, request_for, rounds: int = 3, n: int = 40) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            response = view(request_for())
            assert response.status_code == 200
            response.render()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1000


def test_uncached_search_costs_about_a_bare_drf_list(settings, clinic_service, capsys):
    settings.SLOT_SEARCH_CACHE_SECONDS = 0
    SlotFactory.create_batch(60, service=clinic_service, capacity=2)
    factory = APIRequestFactory()
    query = {"clinic_id": clinic_service.clinic_id, "service_id": clinic_service.id}
    ours = SearchOnly.as_view({"get": "list"})
    bare = BareSlotList.as_view()
    results = {"search": [], "bare": []}
    for _ in range(2):  # interleaved, so load on the machine hits both alike
        results["search"].append(per_request_ms(ours, lambda: factory.get("/s", query)))
        results["bare"].append(per_request_ms(bare, lambda: factory.get("/s", query)))
    search, baseline = min(results["search"]), min(results["bare"])
    with capsys.disabled():
        print(
            f"\nuncached search {search:.2f} ms, bare DRF list of 20 {baseline:.2f} ms, "
            f"speed ratio {baseline / search:.2f}x"
        )
    assert search <= baseline * 1.1
