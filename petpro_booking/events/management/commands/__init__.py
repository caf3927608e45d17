"""`manage.py setup_broker` and `manage.py outbox`."""
