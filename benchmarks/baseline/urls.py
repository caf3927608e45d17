from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/slots", views.SlotList.as_view()),
    path("api/v1/reservations", views.HoldCreate.as_view()),
    path("guarded/api/v1/reservations", views.GuardedHoldCreate.as_view()),
    path("api/v1/reservations/<uuid:hold_id>/confirm", views.HoldConfirm.as_view()),
    path("healthz", views.healthz),
]
