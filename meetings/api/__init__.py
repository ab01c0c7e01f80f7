"""The meetings app REST API, one module per resource (shared parts: visio_broker.api)."""
