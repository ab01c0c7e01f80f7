from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class VisioBrokerConfig(AppConfig):
    name = "visio_broker"
    verbose_name = "Visio Broker"

    def ready(self) -> None:
        from agencies.models import Agency, ApiKey
        from visio_broker.api_key_cache import api_keys_changed

        # Cache invalidation only: the keys each process keeps (visio_broker.api_key_cache).
        for model in (ApiKey, Agency):
            post_save.connect(api_keys_changed, sender=model, dispatch_uid=f"api-keys-{model}")
            post_delete.connect(api_keys_changed, sender=model, dispatch_uid=f"api-keys-{model}-d")
