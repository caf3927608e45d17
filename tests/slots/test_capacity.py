"""One rule for available capacity, used by the model, the API and the admin's slot picker."""

from __future__ import annotations

import pytest

from bookings.admin import SlotChoiceField
from slots.models import Slot, SlotStatus, available_capacity


@pytest.mark.parametrize(
    ("status", "capacity", "booked", "held", "left"),
    [
        (SlotStatus.OPEN, 3, 1, 1, 1),
        (SlotStatus.OPEN, 3, 0, 0, 3),
        (SlotStatus.CLOSED, 3, 0, 0, 0),  # a closed slot takes no one
        (SlotStatus.OPEN, 1, 1, 1, 0),  # never negative
    ],
)
def test_available_capacity(status, capacity, booked, held, left):
    assert (
        available_capacity(status=status, capacity=capacity, booked_count=booked, held_count=held)
        == left
    )
    slot = Slot(status=status, capacity=capacity, booked_count=booked, held_count=held)
    assert slot.available_capacity == left


def test_the_admins_slot_picker_counts_closed_slots_as_full_and_never_below_zero(slot):
    field = SlotChoiceField(queryset=Slot.objects.all())
    slot.status = SlotStatus.CLOSED
    assert ", 0 free" in field.label_from_instance(slot)
    slot.status, slot.capacity, slot.booked_count, slot.held_count = SlotStatus.OPEN, 1, 1, 1
    assert ", 0 free" in field.label_from_instance(slot)
