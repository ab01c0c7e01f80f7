"""The OpenAPI document: served, valid, and every operation says its scope, errors and examples."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "patch", "put", "delete")


@pytest.fixture
def schema():
    response = Client().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_api_schema_covers_every_resource_of_the_design(schema):
    paths = set(schema["paths"])
    for expected in (
        "/api/v1/meetings/",
        "/api/v1/meetings/{id}/",
        "/api/v1/meetings/{id}/occurrences/",
        "/api/v1/meetings/{id}/occurrences/{occurrence_id}/cancel/",
        "/api/v1/meetings/{id}/occurrences/{occurrence_id}/move/",
        "/api/v1/meetings/{id}/join-ticket/",
        "/api/v1/freebusy/",
        "/api/v1/changes/",
        "/api/v1/feeds/",
        "/api/v1/webhooks/",
    ):
        assert expected in paths
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_api_every_operation_documents_scope_errors_and_examples(schema):
    operations = list(_operations(schema))
    assert len(operations) >= 20
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("x-required-scopes"), where
        assert operation["x-required-scopes"][0] in operation["description"], where
        assert operation.get("security") == [{"ApiKey": []}], where
        responses = operation["responses"]
        for status in ("401", "403", "429"):
            assert "application/problem+json" in responses[status]["content"], (where, status)
        if "{" in path:
            assert "404" in responses, where
        if method in ("patch", "delete"):
            assert "412" in responses, where
        examples = [
            content
            for response in responses.values()
            for content in response.get("content", {}).values()
            if content.get("examples") or content.get("example")
        ]
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        success = [r for status, r in responses.items() if status.startswith("2")]
        carries_json = body or any("content" in r for r in success)
        # An operation with nothing to show (DELETE answering 204) needs no example.
        assert examples or body.get("examples") or not carries_json, f"{where}: no example"


def test_api_docs_page_is_served_from_our_own_static_files():
    response = Client().get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "unpkg" not in html
