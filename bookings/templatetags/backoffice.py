"""Template filters of the daily tool: moments in the clinic's time zone, zone named."""

from __future__ import annotations

import datetime as dt

from django import template

from slots.display import local_label

register = template.Library()


@register.filter
def local(moment: dt.datetime | None, zone_name: str) -> str:
    """`{{ event.created_at|local:story.zone_name }}` -> `2026-12-09 10:00 (Europe/Berlin)`."""
    return local_label(moment, zone_name or "UTC")
