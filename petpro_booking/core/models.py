"""Idempotency keys of mutating POSTs (Stripe's semantics, docs/holds.md)."""

from django.db import models


class IdempotencyKey(models.Model):
    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=255)
    principal = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    # Null while the first request is still running (a second one then gets 409).
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    # The headers a replay must repeat (Location of a 201, ETag, Content-Type); null on rows
    # stored before they were kept: those replay status and body only.
    response_headers = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "idempotency_keys"
        constraints = [
            models.UniqueConstraint(
                fields=["principal", "key"], name="idempotency_keys_principal_key_uniq"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_keys_created_idx")]

    def __str__(self) -> str:
        return f"{self.principal}:{self.key}"
