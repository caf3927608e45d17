"""URL routes: /api/v1/ (DRF), schema and docs, admin, probes and metrics."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from bookings.api import BookingViewSet, ReservationConfirmView
from bookings.payment_api import BookingPaymentView, PaymentWebhookView
from bookings.personal_data_api import MyDataView
from petpro_booking.core import exception_handler, health, metrics_export
from petpro_booking.core.docs_view import DocsView
from reservations.api import ReservationGroupView, ReservationViewSet
from slots.api import ClinicViewSet, SlotViewSet
from waitlist.api import SlotAvailabilityView, WaitlistViewSet

router = DefaultRouter(trailing_slash=False)
router.include_root_view = False
# The busiest first: Django tries the patterns in order (search, then holds, ~30 regex matches a
# hold when it came fourth).
router.register("slots", SlotViewSet, basename="slot")
router.register("reservations", ReservationViewSet, basename="reservation")
router.register("bookings", BookingViewSet, basename="booking")
router.register("clinics", ClinicViewSet, basename="clinic")
router.register("waitlist", WaitlistViewSet, basename="waitlist")

urlpatterns = [
    # Before the router: /reservations/{id}/confirm belongs to bookings, not to the hold viewset.
    path(
        "api/v1/reservations/<uuid:reservation_id>/confirm",
        ReservationConfirmView.as_view(),
        name="reservation-confirm",
    ),
    path(
        "api/v1/reservations/groups/<str:group_id>",
        ReservationGroupView.as_view(),
        name="reservation-group",
    ),
    path(
        "api/v1/bookings/<uuid:booking_id>/payment",
        BookingPaymentView.as_view(),
        name="booking-payment",
    ),
    path(
        "api/v1/slots/<str:slot_id>/availability",
        SlotAvailabilityView.as_view(),
        name="slot-availability",
    ),
    path("api/v1/me/data", MyDataView.as_view(), name="me-data"),
    path("api/v1/payments/webhook", PaymentWebhookView.as_view(), name="payment-webhook"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
    path("admin/backoffice/", include("bookings.backoffice.urls")),  # the daily tool
    # Anything else under /api/ (a trailing slash, a malformed id, an unknown path): the JSON
    # envelope, also with DEBUG on (Django's debug 404 page would list every pattern).
    re_path(r"^api/", csrf_exempt(exception_handler.api_not_found), name="api-not-found"),
    path("admin/", admin.site.urls),
    path("healthz", exception_handler.get_only(health.healthz), name="healthz"),
    path("readyz", exception_handler.get_only(health.readyz), name="readyz"),
    # Multiprocess-safe under gunicorn, with the scrape-time gauges (outbox, expiry, checks).
    path(
        "metrics",
        exception_handler.get_only(metrics_export.metrics_view),
        name="prometheus-django-metrics",
    ),
]

handler400 = "petpro_booking.core.exception_handler.json_bad_request"
handler404 = "petpro_booking.core.exception_handler.json_not_found"
handler500 = "petpro_booking.core.exception_handler.json_server_error"
