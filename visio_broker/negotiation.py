"""Content negotiation of the API (REST_FRAMEWORK's DEFAULT_CONTENT_NEGOTIATION_CLASS).

A module of its own: DRF's APIView reads the setting when rest_framework.views is imported,
which visio_broker.api itself imports.
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answering the usual request (no ``Accept``, or ``*/*``, and no
    ``?format=``) without parsing the header: DRF would pick the first renderer for it too,
    after a twentieth of a join ticket's time."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        meta = request.META
        # Without a query string there is no ?format= (and no QueryDict to build to see it).
        no_format = not meta.get("QUERY_STRING") or "format" not in request.query_params
        if meta.get("HTTP_ACCEPT", "*/*") == "*/*" and not format_suffix and no_format:
            first = next(iter(renderers))
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
