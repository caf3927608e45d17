"""Clinics and services read-model, slots, schedules and availability search."""
