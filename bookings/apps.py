"""App config for bookings."""

from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"

    def ready(self) -> None:
        # The sandbox provider (embedded default) delivers its signed webhooks straight to the
        # same handler as POST /api/v1/payments/webhook; integrations never import apps.
        from integrations.payments.sandbox import webhook_receiver_register

        from .services import payment_webhook_receive

        webhook_receiver_register(
            lambda body, signature: payment_webhook_receive(body=body, signature=signature)
        )
