from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AgenciesConfig(AppConfig):
    name = "agencies"
    verbose_name = _("Agencies")

    def ready(self) -> None:
        # Register the outbox sender of agency webhooks (``@sender``) in every process.
        from agencies import webhooks  # noqa: F401
