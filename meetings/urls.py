from django.urls import path, register_converter

from meetings import views


class OccurrenceKeyConverter:
    """An occurrence's original start in UTC, as in ``20260302T090000Z``."""

    regex = r"[0-9]{8}T[0-9]{6}Z"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OccurrenceKeyConverter, "occurrence")

urlpatterns = [
    path("agenda/", views.agenda, name="agenda"),
    path("agenda/week/", views.agenda_week, name="agenda_week"),
    path("meetings/new/", views.meeting_new, name="meeting_new"),
    path("meetings/new/recurrence/", views.recurrence_summary, name="meeting_recurrence_summary"),
    path("meetings/new/people/", views.people_search, name="meeting_people_search"),
    path("meetings/new/availability/", views.availability, name="meeting_availability"),
    path("meetings/new/find-a-time/", views.find_a_time, name="meeting_find_a_time"),
    path("meetings/<int:pk>/", views.meeting_detail, name="meeting_detail"),
    path("meetings/<int:pk>/edit/", views.meeting_edit, name="meeting_edit"),
    path("meetings/<int:pk>/cancel/", views.meeting_cancel, name="meeting_cancel"),
    path("meetings/<int:pk>/respond/", views.meeting_respond, name="meeting_respond"),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/",
        views.meeting_detail,
        name="occurrence_detail",
    ),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/respond/",
        views.meeting_respond,
        name="occurrence_respond",
    ),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/cancel/",
        views.occurrence_cancel,
        name="occurrence_cancel",
    ),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/edit-following/",
        views.meeting_edit_following,
        name="occurrence_edit_following",
    ),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/move/",
        views.occurrence_move,
        name="occurrence_move",
    ),
    # Calendar feeds: the token in this path is the only credential; it opens nothing else.
    path("feeds/<str:token>.ics", views.feed, name="feed"),
    path("profile/calendar-feed/create/", views.profile_feed_create, name="profile_feed_create"),
    path("profile/calendar-feed/rotate/", views.profile_feed_rotate, name="profile_feed_rotate"),
    path("profile/calendar-feed/revoke/", views.profile_feed_revoke, name="profile_feed_revoke"),
    path("profile/calendar-feed/options/", views.profile_feed_options, name="profile_feed_options"),
    path("agency/calendar/", views.agency_calendar, name="agency_calendar"),
    path("agency/calendar/rotate/", views.agency_calendar_rotate, name="agency_calendar_rotate"),
    # RSVP links of invitations: the signed token is the only credential, for one answer.
    path("rsvp/<str:token>/", views.rsvp_answer, name="rsvp"),
]
