from celery import shared_task
from django.utils import timezone

from agencies.models import Session


@shared_task(name="agencies.sessions_purge")
def sessions_purge_task() -> int:
    """Beat, daily: delete expired sessions (what ``manage.py clearsessions`` does), so the
    table holds only live sign-ins. Returns how many were deleted."""
    deleted, _rows = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
