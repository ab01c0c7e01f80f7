"""Keep calendar feed tokens and API key secrets out of logs and error reports.

A feed URL (``/feeds/<token>.ics``) is a capability: whoever reads it reads the calendar. The
token is replaced by ``[redacted]`` in log records (Django's request loggers and every handler),
in gunicorn's access log (``visio_broker.gunicorn_logging``) and in error reports.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

# Whatever stands after /feeds/ up to the extension or the next delimiter: a real token, a
# mistyped one or a percent-encoded one alike.
FEED_PATH = re.compile(r"/feeds/[^/?#.\s\"'<>]+")
REDACTED_PATH = "/feeds/[redacted]"


# An API key that strays into a message (a pasted URL, an exception) keeps only its prefix.
API_KEY = re.compile(r"\b(vbk_[a-z0-9]{10})_[0-9a-f]{8,}")


def redact(text: str) -> str:
    if "vbk_" in text:
        text = API_KEY.sub(r"\1_[redacted]", text)
    if "/feeds/" not in text:
        return text
    return FEED_PATH.sub(REDACTED_PATH, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1")).encode("latin-1")
    if isinstance(value, HttpRequest):
        # "Not Found: %s" passes the path, but handlers may format the request itself.
        return redact(repr(value))
    return value


class RedactFeedTokens(logging.Filter):
    """Rewrite ``/feeds/<token>`` in a record's message and arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, Mapping):
            record.args = {key: _redact_value(value) for key, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_redact_value(value) for value in args)
        return True


def _feed_token_of(request: HttpRequest | None) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name != "feed":
        return None
    token = match.kwargs.get("token")
    return token if isinstance(token, str) and token else None


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: feed tokens and API key secrets hidden from the request's META and
    frame variables.

    Frame variables hold the token in forms no pattern finds (the view's kwargs, a resolver
    match): any variable whose text shows the request's token is shown redacted.
    """

    def get_safe_request_meta(self, request: HttpRequest) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        return {key: _redact_value(value) for key, value in meta.items()}

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: Any) -> Any:
        token = _feed_token_of(request)
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            try:
                shown = value if isinstance(value, str) else repr(value)
            except Exception:  # a broken __repr__ must not break the report
                shown = ""
            if (token and token in shown) or "/feeds/" in shown or "vbk_" in shown:
                value = redact(shown.replace(token, "[redacted]") if token else shown)
            cleansed.append((name, value))
        return cleansed


def redact_request(request: HttpRequest) -> None:
    """Hide the token from what Django later shows of this request (logs, error reports)."""
    request.path = redact(request.path)
    request.path_info = redact(request.path_info)
