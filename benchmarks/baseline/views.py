"""The least each request must do. Search: a filtered, ordered ModelSerializer list of 20 with
DRF's page-number pagination (its COUNT included). Hold: one transaction that locks the slot
row, takes a unit with a conditional UPDATE and INSERTs the hold. Confirm: one transaction that
locks the hold, moves the unit from held to booked and marks the hold confirmed."""

from django.db import transaction
from django.db.models import F
from django.http import JsonResponse
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Hold, Slot


class SlotSerializer(serializers.ModelSerializer):
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
        ]


class SlotList(generics.ListAPIView):
    serializer_class = SlotSerializer

    def get_queryset(self):
        params = self.request.query_params
        queryset = Slot.objects.filter(
            clinic_id=params.get("clinic_id", ""), service_id=params.get("service_id", "")
        )
        if params.get("start_from"):
            queryset = queryset.filter(start_at__gte=params["start_from"])
        return queryset.order_by("start_at", "id")


class HoldInput(serializers.Serializer):
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(max_length=64)


class HoldCreate(APIView):
    def post(self, request):
        body = HoldInput(data=request.data)
        body.is_valid(raise_exception=True)
        slot_id = body.validated_data["slot_id"]
        with transaction.atomic():
            Slot.objects.select_for_update().filter(id=slot_id).values_list("id").first()
            taken = Slot.objects.filter(
                id=slot_id, held_count__lt=F("capacity") - F("booked_count")
            ).update(held_count=F("held_count") + 1)
            if not taken:
                return Response({"error": {"code": "slot_unavailable"}}, status=409)
            hold = Hold.objects.create(
                slot_id=slot_id, user_id="owner", pet_id=body.validated_data["pet_id"]
            )
        return Response({"id": str(hold.id), "slot_id": str(slot_id)}, status=201)


class HoldConfirm(APIView):
    def post(self, request, hold_id):
        with transaction.atomic():
            hold = Hold.objects.select_for_update().filter(id=hold_id, status="held").first()
            if hold is None:
                return Response({"error": {"code": "reservation_not_held"}}, status=409)
            Slot.objects.filter(id=hold.slot_id).update(
                held_count=F("held_count") - 1, booked_count=F("booked_count") + 1
            )
            hold.status = "confirmed"
            hold.save(update_fields=["status"])
        return Response({"id": str(hold.id), "status": "confirmed"}, status=201)


def healthz(request):
    return JsonResponse({"status": "ok"})
