"""Temporary holds: create, release, expire, confirm into a booking."""
