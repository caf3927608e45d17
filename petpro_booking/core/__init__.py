"""Cross-cutting pieces: errors, auth, permissions, locking, idempotency, health."""
