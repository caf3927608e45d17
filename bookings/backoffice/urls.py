"""Routes of the daily tool, behind the admin's login (`admin.site.admin_view`)."""

from django.contrib import admin
from django.urls import path

from . import views

app_name = "backoffice"

urlpatterns = [
    path("schedule/", admin.site.admin_view(views.schedule_home), name="schedule-home"),
    # `path`: a clinic id is the Clinic Service's opaque string and may hold a "/".
    path("schedule/<path:clinic_id>/", admin.site.admin_view(views.schedule), name="schedule"),
    path("slots/<str:slot_id>/", admin.site.admin_view(views.slot_page), name="slot"),
    path("bookings/", admin.site.admin_view(views.booking_find), name="find"),
    path("bookings/<str:booking_id>/", admin.site.admin_view(views.booking_page), name="booking"),
]
