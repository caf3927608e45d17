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
    locale = models.CharField(max_length=10, default="en")

    class Meta:
        db_table = "local_users"
        verbose_name = "user (local adapter)"

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

    def __str__(self) -> str:
        return f"{self.name} ({self.species})"
