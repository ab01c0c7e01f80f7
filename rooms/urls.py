from django.urls import path

import meetings.urls  # noqa: F401  (registers the <occurrence:…> converter)
from rooms import views, webhooks

urlpatterns = [
    path("agency/backends/", views.backend_list, name="backend_list"),
    path("rooms/livekit/webhook/", webhooks.livekit_webhook, name="livekit_webhook"),
    path("meetings/<int:pk>/attendance/", views.meeting_attendance, name="meeting_attendance"),
    path(
        "meetings/<int:pk>/attendance.csv",
        views.meeting_attendance_csv,
        name="meeting_attendance_csv",
    ),
    # --- Join and lobby ----------------------------------------------------------------------
    path("meetings/<int:pk>/join/", views.meeting_join, name="meeting_join"),
    path(
        "meetings/<int:pk>/occurrences/<occurrence:key>/join/",
        views.meeting_join,
        name="occurrence_join",
    ),
    path("meetings/<int:pk>/lobby/", views.lobby_wait, name="lobby_wait"),
    path("meetings/<int:pk>/lobby/status/", views.lobby_status, name="lobby_status"),
    path(
        "meetings/<int:pk>/lobby/queue/<occurrence:key>/",
        views.lobby_queue,
        name="lobby_queue",
    ),
    path(
        "meetings/<int:pk>/lobby/<int:entry_pk>/admit/",
        views.lobby_decide,
        {"decision": "admit"},
        name="lobby_admit",
    ),
    path(
        "meetings/<int:pk>/lobby/<int:entry_pk>/refuse/",
        views.lobby_decide,
        {"decision": "refuse"},
        name="lobby_refuse",
    ),
    # --- Ad-hoc rooms ("meet now") -----------------------------------------------------------
    path("rooms/now/", views.adhoc_room_new, name="adhoc_room_new"),
    path("rooms/now/<slug:room_name>/", views.adhoc_room, name="adhoc_room"),
    path("rooms/now/<slug:room_name>/join/", views.adhoc_room_join, name="adhoc_room_join"),
    path("rooms/now/<slug:room_name>/close/", views.adhoc_room_close, name="adhoc_room_close"),
]
