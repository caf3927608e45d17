"""Admin for payment records: read-only, scoped to the clinics a user manages, with the support
action "re-check with the provider" (the reconciliation of one payment, on demand). Times read
in the booking's clinic's zone, the zone written."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from petpro_booking.core.admin_access import ClinicScopedAdmin, admin_principal
from petpro_booking.core.admin_times import local_time_column
from petpro_booking.core.errors import ApplicationError

from . import services
from .models import PaymentRecord


def _clinic_zone(record: PaymentRecord) -> str:
    return record.booking.slot.clinic.timezone


RECHECK_OUTCOMES = {
    "confirmed": "paid: the booking is confirmed",
    "late_rebooked": "paid late: the booking is confirmed again",
    "late_refunded": "paid after the booking was cancelled: refund requested",
    "failed": "failed at the provider; the booking stays payable until its deadline",
    "refunded": "refunded at the provider",
    "still_pending": "still pending at the provider",
    "already_applied": "nothing new: our record already says what the provider says",
    "not_sent": "never reached the provider (no payment id); the owner can pay again",
    "amount_mismatch": "paid with a wrong amount: refund requested",
    "duplicate_payment_refunded": "a second payment for a paid booking: refund requested",
}


@admin.register(PaymentRecord)
class PaymentRecordAdmin(ClinicScopedAdmin):
    clinic_field = "booking__clinic_id"
    list_display = [
        "payment_id",
        "booking",
        "status",
        "amount",
        "currency",
        "refund_requested_local",
        "created_local",
        "updated_local",
    ]
    list_filter = ["status", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=payment_id", "=idempotency_key", "=booking__reference"]
    list_select_related = ["booking__slot__clinic"]
    actions = ["recheck_with_provider"]
    readonly_fields = (
        "booking",
        "payment_id",
        "idempotency_key",
        "status",
        "amount",
        "currency",
        "checkout_url",
        "last_payload",
        "refund_requested_local",
        "version",
        "created_local",
        "updated_local",
    )
    fields = readonly_fields
    # The owner's checkout link and the provider's answers (which carry it, and may name the
    # owner) are for support; the API gives the link to the owner alone.
    support_only = ("checkout_url", "last_payload")

    def get_fields(self, request: HttpRequest, obj=None):  # type: ignore[no-untyped-def]
        if self.has_support_permission(request):
            return self.fields
        return [name for name in self.fields if name not in self.support_only]

    def get_readonly_fields(self, request: HttpRequest, obj=None):  # type: ignore[no-untyped-def]
        return self.get_fields(request, obj)

    refund_requested_local = local_time_column(
        "refund_requested_at", "refund requested (clinic time)", zone_of=_clinic_zone
    )
    created_local = local_time_column("created_at", "created (clinic time)", zone_of=_clinic_zone)
    updated_local = local_time_column("updated_at", "updated (clinic time)", zone_of=_clinic_zone)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The object's page reads the clinic's zone too: one query, not three.
        return super().get_queryset(request).select_related("booking__slot__clinic")

    # Payment records change only through the provider's word (webhook, reconciliation).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_support_permission(self, request: HttpRequest) -> bool:
        principal = admin_principal(request.user)
        return principal is not None and principal.is_support

    @admin.action(
        description="Re-check selected payments with the payment provider",
        permissions=["support"],
    )
    def recheck_with_provider(self, request: HttpRequest, queryset: QuerySet) -> None:
        for record in queryset.select_related("booking").order_by("created_at")[:50]:
            label = f"{record.booking.reference} / {record.payment_id or record.idempotency_key}"
            try:
                outcome = services.payment_reconcile(record_id=record.pk)
            except ApplicationError as exc:  # provider down or refusing, booking moved...
                self.message_user(request, f"{label}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request, f"{label}: {RECHECK_OUTCOMES.get(outcome, outcome)}.", messages.SUCCESS
            )
