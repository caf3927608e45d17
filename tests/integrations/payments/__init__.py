"""Tests of the Payment Service client, sandbox and webhook signing."""
