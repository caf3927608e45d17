"""The embedded default: SQLite, local-memory cache, eager tasks, debug on (DESIGN.md §2)."""

from .base import *
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
LOG_LEVEL = env("LOG_LEVEL", default="DEBUG")
LOGGING["root"]["level"] = LOG_LEVEL
