from __future__ import annotations

from django.db.models import QuerySet

from agencies.models import Agency, Membership, Role, User


def membership_of(user: User) -> Membership | None:
    if not user.is_authenticated:
        return None
    try:
        return Membership.objects.select_related("agency").get(user=user)
    except Membership.DoesNotExist:
        return None


def is_agency_admin(user: User) -> bool:
    return user.is_authenticated and Membership.objects.filter(user=user, role=Role.ADMIN).exists()


def agency_members(*, agency: Agency) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(agency=agency)
        .select_related("user")
        .order_by("-user__is_active", "user__display_name", "user__email")
    )
