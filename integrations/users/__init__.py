"""Users and pets: the User Service client, or the local tables in embedded mode."""

from .gateway import Pet, UserProfile, pet_get, user_get

__all__ = ["Pet", "UserProfile", "pet_get", "user_get"]
