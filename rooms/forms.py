"""Forms of the rooms app's web pages."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

# --- Join ----------------------------------------------------------------------------------------


class GuestNameForm(forms.Form):
    """A guest of a link meeting says who they are; moderators see this name in the lobby."""

    name = forms.CharField(
        label=_("Your name"),
        max_length=80,
        help_text=_("Shown to the other participants."),
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


# --- Ad-hoc rooms --------------------------------------------------------------------------------


class AdhocRoomForm(forms.Form):
    """Open a room now; without a title the service names it "Meet now"."""

    title = forms.CharField(label=_("Title (optional)"), max_length=200, required=False)
