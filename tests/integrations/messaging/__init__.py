"""Tests of the messaging integration: message builder, schemas, publishers."""
