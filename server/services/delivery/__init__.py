"""Outgoing federation: the transactional outbox, the fan-out and the delivery batches."""
