"""Middleware that serves people in browsers steps aside for API calls.

An API call (a path under ``API_PATH``) is authenticated by its key in ``Authorization``, never by
a session cookie: the signed-in user, messages, allauth's session tracking, the profile language
and the two-factor rule have nothing to do for it, and each still cost its calls: together about
a twelfth of a join ticket's Python (bench/api.py). ``browser_only`` makes a middleware skip such
calls. It returns a subclass, so Django's and allauth's checks, which look for subclasses, still
find the middleware. Session and CSRF middleware keep running for every request: Django's
deployment checks look for them by name, and for a call without cookies they do next to nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from allauth.usersessions.middleware import UserSessionsMiddleware as _UserSessionsMiddleware
from django.contrib.messages.middleware import MessageMiddleware as _MessageMiddleware
from django.http import HttpRequest

API_PATH = "/api/"
# The hooks Django's handler collects from a middleware instance, besides calling it.
_HOOKS = ("process_view", "process_exception", "process_template_response")

M = TypeVar("M", bound=type)


def is_api_call(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PATH)


def browser_only(middleware: M) -> M:
    """A subclass of ``middleware`` that passes API calls straight on, and whose hooks ignore
    them. ``middleware`` keeps the next handler as ``get_response`` (MiddlewareMixin does)."""

    def __call__(self: Any, request: HttpRequest) -> Any:
        if is_api_call(request):
            return self.get_response(request)
        return middleware.__call__(self, request)

    namespace: dict[str, Any] = {
        "__call__": __call__,
        "__doc__": middleware.__doc__,
        "__module__": middleware.__module__,
        "__qualname__": middleware.__qualname__,
    }
    for hook in _HOOKS:
        if hasattr(middleware, hook):
            namespace[hook] = _hook_for_browsers(hook, getattr(middleware, hook))
    return type(middleware.__name__, (middleware,), namespace)  # type: ignore[return-value]


def _hook_for_browsers(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
    # process_template_response must hand the response on; the other hooks say "nothing to
    # do" with None.
    passes_on_response = name == "process_template_response"

    def for_browsers(self: Any, request: HttpRequest, *args: Any) -> Any:
        if is_api_call(request):
            return args[-1] if passes_on_response else None
        return hook(self, request, *args)

    return for_browsers


MessageMiddleware = browser_only(_MessageMiddleware)
UserSessionsMiddleware = browser_only(_UserSessionsMiddleware)
