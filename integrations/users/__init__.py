"""Users and pets: the User Service client, or the local tables in embedded mode."""

from .gateway import (
    Pet,
    UserProfile,
    pet_get,
    pets_matching,
    pets_of,
    user_get,
    users_matching,
)

__all__ = [
    "Pet",
    "UserProfile",
    "pet_get",
    "pets_matching",
    "pets_of",
    "user_get",
    "users_matching",
]
