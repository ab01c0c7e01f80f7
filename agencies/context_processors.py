from typing import Any

from django.http import HttpRequest

from agencies.selectors import membership_of


def membership(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's home membership, for the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"current_membership": None}
    return {"current_membership": membership_of(user)}
