"""Client of the Payment Service, its sandbox provider and webhook signing (docs/payments.md)."""
