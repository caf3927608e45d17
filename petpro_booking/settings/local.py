"""The embedded default: SQLite, local-memory cache, eager tasks, debug on (README.md)."""

from .base import *
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# INFO: `make run` shows the tokens, the URLs and what the embedded clock did, not every
# debug line of every library (LOG_LEVEL=DEBUG brings them back).
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING["root"]["level"] = LOG_LEVEL
# Every relayed message is in var/events.log already; every eager task run (the relay sweep
# every 5 s) would bury the clock's lines. DEBUG shows both again.
if LOG_LEVEL != "DEBUG":
    LOGGING["loggers"]["petpro.events.sink"] = {"level": "WARNING"}
    LOGGING["loggers"]["celery.app.trace"] = {"level": "WARNING"}
