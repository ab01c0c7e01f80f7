from celery import shared_task


@shared_task(name="visio_broker.ping")
def ping() -> str:
    """Round-trip check used by the embedded-mode smoke test and operators."""
    return "pong"
