"""Every REST resource under /api/v1/; each API module brings its own ``urlpatterns``."""

from django.urls import re_path

from agencies import api as agencies_api
from meetings.api import changes, feeds, freebusy, meetings, occurrences
from rooms import api as rooms_api
from visio_broker.api import api_not_found

urlpatterns = [
    # Join tickets first (no path overlaps): the busiest call, at the top of every hour, and
    # the resolver tries the patterns in order.
    *rooms_api.urlpatterns,
    *meetings.urlpatterns,
    *occurrences.urlpatterns,
    *freebusy.urlpatterns,
    *changes.urlpatterns,
    *feeds.urlpatterns,
    *agencies_api.urlpatterns,
    # Last: whatever else is asked under /api/v1/ is a problem+json 404.
    re_path(r"^(?P<unmatched>[\s\S]*)$", api_not_found),
]
