"""Tests of the event store and its relay."""
