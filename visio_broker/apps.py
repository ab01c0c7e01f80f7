from django.apps import AppConfig


class VisioBrokerConfig(AppConfig):
    name = "visio_broker"
    verbose_name = "Visio Broker"
