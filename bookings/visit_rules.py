"""When a visit may be closed: complete and no-show only once its slot has started."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.translation import gettext

from .errors import InvalidTransition

SLOT_NOT_STARTED = "slot_not_started"


def booking_close_check(*, booking: Any, slot: Any, to_status: str, now: dt.datetime) -> None:
    """Raise 409 `invalid_transition` (details.reason `slot_not_started`) when the visit is
    marked completed or missed before its slot starts: nobody can have come, or failed to,
    yet. From the slot's start on (inclusive) it is allowed."""
    if now < slot.start_at:
        raise InvalidTransition(
            gettext("A visit cannot be marked %(status)s before its slot starts.")
            % {"status": to_status},
            details={
                "status": booking.status,
                "requested": to_status,
                "reason": SLOT_NOT_STARTED,
                "start_at": slot.start_at.isoformat(),
            },
        )
