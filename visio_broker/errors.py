"""The one error vocabulary of the services: stable machine codes plus a human message.

Views show ``message`` (translated); the API will turn ``code`` and ``status`` into
application/problem+json.
"""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    code = "invalid"
    status = 400


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class NoCapacity(Conflict):
    """No allowed media backend has room for the meeting in one of its windows."""

    code = "no_capacity"
    status = 409

    def __init__(
        self, message: str, *, window_start: datetime, window_end: datetime, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.window_start = window_start
        self.window_end = window_end


class BackendUnavailable(DomainError):
    """The agency may use no media backend at all, or none of them is up."""

    code = "backend_unavailable"
    status = 503
