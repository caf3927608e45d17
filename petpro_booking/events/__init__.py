"""The event store (domain events, appended in the business transaction) and its relay."""
