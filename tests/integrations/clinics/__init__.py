"""Tests of the Clinic Service client and the clinics read-model sync."""
