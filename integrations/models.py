"""Tables of the local adapters: users and pets served in embedded mode (no User Service)."""

from django.db import models

from petpro_booking.core.model_fields import EncryptedTextField, LookupHashField


class LocalUser(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    # Contact data, encrypted at rest; found by email through its keyed hash.
    name = EncryptedTextField()
    email = EncryptedTextField(blank=True)
    email_lookup = LookupHashField(source="email")
    phone = EncryptedTextField(blank=True)
    channels = models.JSONField(default=list, help_text='e.g. ["email", "push"]')
    # The owner's language for notifications (en, id); empty: the clinic's default language.
    locale = models.CharField(max_length=10, blank=True, default="")

    class Meta:
        db_table = "local_users"
        verbose_name = "user (local adapter)"
        indexes = [models.Index(fields=["email_lookup"], name="local_users_email_lookup_idx")]

    def __str__(self) -> str:
        return self.name


class LocalPet(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    owner = models.ForeignKey(LocalUser, on_delete=models.CASCADE, related_name="pets")
    name = EncryptedTextField()  # encrypted at rest; found through name_lookup
    name_lookup = LookupHashField(source="name")
    species = models.CharField(max_length=40)

    class Meta:
        db_table = "local_pets"
        verbose_name = "pet (local adapter)"
        indexes = [models.Index(fields=["name_lookup"], name="local_pets_name_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.species})"


class SandboxPayment(models.Model):
    """A payment of the sandbox provider (embedded default): in the database, so every process
    of the embedded or compose stack (web, worker, beat) sees the same payments."""

    payment_id = models.CharField(primary_key=True, max_length=100)
    idempotency_key = models.CharField(max_length=100, unique=True)
    booking_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, default="pending")
    # When the provider settles it on its own (a reader past this moment settles it too).
    settles_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "sandbox_payments"
        verbose_name = "payment (sandbox provider)"

    def __str__(self) -> str:
        return f"{self.payment_id} {self.status}"
