"""The API's content negotiation answers as DRF's does, for every Accept a client sends."""

from __future__ import annotations

import pytest
from django.http import Http404
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from visio_broker.negotiation import ApiContentNegotiation

RENDERER_SETS = {
    "api": [JSONRenderer()],
    "schema": [OpenApiYamlRenderer(), OpenApiJsonRenderer()],
}


def _choice(negotiation, renderers, path, accept, suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except NotAcceptable:
        return "406"
    except Http404:  # ?format= names no renderer
        return "404"
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS.values(), ids=RENDERER_SETS)
@pytest.mark.parametrize(
    ("path", "accept", "suffix"),
    [
        ("/api/v1/meetings/", None, None),
        ("/api/v1/meetings/", "*/*", None),
        ("/api/v1/meetings/", "application/json", None),
        ("/api/v1/meetings/", "application/json; indent=4", None),
        ("/api/v1/meetings/", "text/html", None),
        ("/api/v1/meetings/", "application/vnd.oai.openapi+json, */*;q=0.1", None),
        ("/api/v1/meetings/?format=json", "*/*", None),
        ("/api/v1/meetings/?format=openapi-json", None, None),
        ("/api/v1/meetings/?format=yaml", None, None),
        ("/api/v1/meetings/", "*/*", "json"),
    ],
)
def test_api_negotiation_matches_drf(renderers, path, accept, suffix):
    expected = _choice(DefaultContentNegotiation(), renderers, path, accept, suffix)
    assert _choice(ApiContentNegotiation(), renderers, path, accept, suffix) == expected
