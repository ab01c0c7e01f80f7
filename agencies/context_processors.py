from typing import Any

from django.http import HttpRequest

from agencies.selectors import membership_of


def membership(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's home membership, for the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"current_membership": None}
    if not hasattr(request, "_membership_cache"):
        request._membership_cache = membership_of(user)  # type: ignore[attr-defined]
    return {"current_membership": request._membership_cache}  # type: ignore[attr-defined]
