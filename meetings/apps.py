from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MeetingsConfig(AppConfig):
    name = "meetings"
    verbose_name = _("Meetings")

    def ready(self) -> None:
        # Register the outbox senders of this app (``@sender``) in every process, workers too.
        from meetings import invitations, reminders, rsvp  # noqa: F401
