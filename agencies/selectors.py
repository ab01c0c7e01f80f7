from __future__ import annotations

from django.db.models import QuerySet

from agencies.models import Agency, Membership, Role, User

_UNSET = object()


def membership_of(user: User) -> Membership | None:
    """The user's home membership, read once per user instance (that is, once per request)."""
    if not user.is_authenticated:
        return None
    cached = getattr(user, "_membership_of", _UNSET)
    if cached is _UNSET:
        cached = Membership.objects.select_related("agency").filter(user=user).first()
        user._membership_of = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[return-value]


def is_agency_admin(user: User) -> bool:
    membership = membership_of(user)
    return membership is not None and membership.role == Role.ADMIN


def agency_members(*, agency: Agency) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(agency=agency)
        .select_related("user")
        .order_by("-user__is_active", "user__display_name", "user__email")
    )
