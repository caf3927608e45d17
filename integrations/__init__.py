"""Clients of other services (users, clinics, payments, messaging) and their local adapters."""
