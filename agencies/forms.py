from django import forms
from django.conf import settings
from django.contrib.auth.forms import SetPasswordForm
from django.utils.translation import gettext_lazy as _

from agencies.models import ApiScope, Role
from agencies.reference import timezones

NO_REMINDER = "none"
REMINDER_CHOICES = [
    (NO_REMINDER, _("No reminder")),
    ("5", _("5 minutes before")),
    ("15", _("15 minutes before")),
    ("60", _("1 hour before")),
    ("1440", _("1 day before")),
]


def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in timezones()]


def _reminder_list(value: str) -> list[int]:
    return [] if value == NO_REMINDER else [int(value)]


def reminder_initial(minutes: list[int]) -> str:
    """The select's value for a stored list (the profile offers one reminder at most)."""
    return str(minutes[0]) if minutes else NO_REMINDER


class ProfileForm(forms.Form):
    display_name = forms.CharField(label=_("Display name"), max_length=150, required=False)
    timezone = forms.ChoiceField(label=_("Time zone"), choices=_timezone_choices)
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)
    # Left out of a submission (older clients, scripts): the stored preference stays.
    reminder_minutes = forms.TypedChoiceField(
        label=_("Reminder in calendars"),
        choices=REMINDER_CHOICES,
        coerce=_reminder_list,
        empty_value=None,
        required=False,
        help_text=_("Shown by calendar apps before each meeting in your calendar feed."),
    )


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))
    display_name = forms.CharField(label=_("Name"), max_length=150, required=False)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)
    next = forms.CharField(required=False)


class InvitationAcceptForm(SetPasswordForm):
    """Only validates the two password fields; the service does the write."""


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Integration"),
        max_length=100,
        help_text=_("The system that will use the key, e.g. “Room booking sync”."),
    )
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple
    )
    expires_days = forms.IntegerField(
        label=_("Expires after (days)"),
        min_value=1,
        max_value=3650,
        required=False,
        help_text=_("Leave empty for a key that does not expire."),
    )
