"""Tests of the User Service client."""
