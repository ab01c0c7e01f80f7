"""Every REST resource under /api/v1/; each API module brings its own ``urlpatterns``."""

from agencies import api as agencies_api
from meetings.api import changes, feeds, freebusy, meetings, occurrences
from rooms import api as rooms_api

urlpatterns = [
    *meetings.urlpatterns,
    *occurrences.urlpatterns,
    *rooms_api.urlpatterns,
    *freebusy.urlpatterns,
    *changes.urlpatterns,
    *feeds.urlpatterns,
    *agencies_api.urlpatterns,
]
