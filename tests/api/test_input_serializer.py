"""InputSerializer copies leaf fields shallowly: each instance still owns its bound fields, the
declared fields stay untouched, and validation answers exactly what DRF's own copy answers."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import serializers

from meetings.serializers import MeetingListQuerySerializer
from visio_broker.api import InputSerializer, JsonBodySerializer


class _Inner(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=4)


def _declarations() -> dict[str, Any]:
    """The same fields for both bases: leaves, a list of leaves and a nested serializer."""
    return {
        "email": serializers.EmailField(required=False),
        "size": serializers.IntegerField(required=False, min_value=1, max_value=10, default=5),
        "kind": serializers.ChoiceField(choices=["a", "b"], required=False),
        "when": serializers.DateTimeField(required=False),
        "flag": serializers.BooleanField(required=False),
        "tags": serializers.ListField(child=serializers.CharField(max_length=3), required=False),
        "inner": _Inner(required=False),
    }


Plain = type("Plain", (serializers.Serializer,), _declarations())
Lean = type("Lean", (InputSerializer,), _declarations())


INPUTS: list[dict[str, Any]] = [
    {},
    {"email": "ana@example.org", "size": "7", "kind": "b", "flag": "true"},
    {"email": "not an address", "size": 0, "kind": "c"},
    {"size": 11, "when": "yesterday", "tags": ["abc", "abcd"]},
    {"when": "2027-03-29T10:00:00+02:00", "tags": ["x"], "inner": {"name": "Ana"}},
    {"inner": {"name": "Anabel"}, "tags": "not a list"},
    {"inner": "nope"},
]


@pytest.mark.parametrize("data", INPUTS)
def test_input_serializer_validates_like_drf(data):
    plain, lean = Plain(data=data), Lean(data=data)

    assert plain.is_valid() == lean.is_valid()
    assert lean.errors == plain.errors
    assert {code for errors in lean.errors.values() for code in _codes(errors)} == {
        code for errors in plain.errors.values() for code in _codes(errors)
    }
    if not plain.errors:
        assert lean.validated_data == plain.validated_data


def _codes(errors: Any) -> list[str]:
    if isinstance(errors, dict):
        return [code for value in errors.values() for code in _codes(value)]
    if isinstance(errors, list):
        return [code for value in errors for code in _codes(value)]
    return [errors.code]


def test_each_instance_owns_its_bound_fields_and_declarations_stay_unbound():
    first, second = Lean(data={"email": "bad"}), Lean(data={"email": "ana@example.org"})

    for name in ("email", "size", "tags", "inner"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
        assert second.fields[name].parent is second
        assert first.fields[name].field_name == name
        declared = Lean._declared_fields[name]
        assert declared is not first.fields[name]
        assert declared.parent is None
        assert declared.field_name is None
    # A list field's child and a nested serializer's fields belong to this instance's copy.
    assert first.fields["tags"].child.parent is first.fields["tags"]
    assert first.fields["tags"].child is not second.fields["tags"].child
    assert first.fields["inner"].fields["name"].parent is first.fields["inner"]

    assert not first.is_valid()
    assert second.is_valid()
    assert set(first.errors) == {"email"}
    assert second.validated_data["email"] == "ana@example.org"


def test_request_serializers_use_the_lean_copy():
    assert issubclass(JsonBodySerializer, InputSerializer)
    query = MeetingListQuerySerializer(data={"page_size": "100", "status": "scheduled"})

    assert query.is_valid(), query.errors
    assert query.validated_data == {"page_size": 100, "status": "scheduled"}
    assert query.fields["page_size"] is not MeetingListQuerySerializer._declared_fields["page_size"]
    refused = MeetingListQuerySerializer(data={"page_size": "0", "organizer": "x"})
    assert not refused.is_valid()
    assert set(refused.errors) == {"page_size", "organizer"}
