"""Serializer behaviour every endpoint shares."""

from __future__ import annotations

import copy

from rest_framework import serializers


class FieldsBuiltOnce(serializers.Serializer):
    """Mix in first, into a serializer whose fields are the same for every instance:
    they are built once per class, then copied for each instance to bind.

    DRF builds them per instance — a model serializer reads its model's fields into
    serializer fields, and every field is re-created from its arguments (its
    ``__init__`` gathering its class's error messages, its validators made anew): most
    of the CPU a submit's request and answer took. A copy shares the built field's
    attributes, which are made once and only read after (its validators, choices,
    messages); a field with a field among its arguments (a list's child, bound to its
    parent) is copied deeply, as DRF copies it."""

    _built_fields: dict[type, list[tuple[str, serializers.Field, bool]]] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        built = self._built_fields.get(type(self))
        if built is None:
            built = self._built_fields[type(self)] = [
                (name, field, _has_a_field_inside(field)) for name, field in super().get_fields().items()
            ]
        return {name: _copy_with_inside(field) if deep else _copy(field) for name, field, deep in built}


def _has_a_field_inside(field: serializers.Field) -> bool:
    args, kwargs = field._args, field._kwargs  # type: ignore[attr-defined]  # what DRF's Field.__new__ keeps
    return any(isinstance(value, serializers.Field) for value in (*args, *kwargs.values()))


# Where DRF keeps the field inside a field, bound to it: a list's or a dict's child, a
# many-relation's child relation.
_INSIDE = ("child", "child_relation")


def _copy_with_inside(field: serializers.Field) -> serializers.Field:
    """A field with one plain field inside: both copied, the inside bound to the copy,
    as DRF's ``__init__`` binds it (a deep copy re-creates both from their arguments: a
    many-relation's was 4 % of a submit's CPU). Anything else is copied deeply."""
    inside = [(name, held) for name in _INSIDE if isinstance(held := field.__dict__.get(name), serializers.Field)]
    if len(inside) != 1 or _has_a_field_inside(inside[0][1]):
        return copy.deepcopy(field)
    ((name, held),) = inside
    fresh, inner = _copy(field), _copy(held)
    setattr(fresh, name, inner)
    inner.source = inner._kwargs.get("source")  # type: ignore[attr-defined]  # as made, before its first binding
    inner.bind(field_name="", parent=fresh)  # type: ignore[arg-type]  # as DRF binds it: to a field
    return fresh


def _copy(field: serializers.Field) -> serializers.Field:
    fresh = object.__new__(type(field))
    fresh.__dict__.update(field.__dict__)
    return fresh


class RejectUnknownFields(serializers.Serializer):
    """A field the endpoint does not know is a 400 naming it: a typo such as "priorty"
    must not be accepted and silently ignored."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Known fields: {known}."] for name in unknown}
                )
        return super().to_internal_value(data)


class NoEmptyValues(serializers.Serializer):
    """Mix in first, into a serializer of query parameters: an empty value (``?page=``)
    is a 400 naming it — DRF would read it as "not given" and answer as if it were."""

    def to_internal_value(self, data):
        # The stubs say iterating a serializer's fields yields Field objects; it yields names.
        empty: list[str] = [name for name in self.fields if hasattr(data, "get") and data.get(name) == ""]  # type: ignore[misc]
        if empty:
            raise serializers.ValidationError(
                {name: ["An empty value is not a value: leave it out."] for name in empty}
            )
        return super().to_internal_value(data)


class ChoiceField(serializers.ChoiceField):
    """DRF's, whose refusal lists what is accepted: '"urgent" is not a valid choice: one
    of immediate, normal, low.' (DRF's says only that it is not valid)."""

    def __init__(self, choices, **kwargs) -> None:
        super().__init__(choices, **kwargs)
        listed = ", ".join(str(choice) or '""' for choice in self.choices)
        self.error_messages["invalid_choice"] = f'"{{input}}" is not a valid choice: one of {listed}.'


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only: DRF's own takes 0, 1, "yes", "on"… — a client's
    wrong type should be a 400, not a guess."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictCharField(serializers.CharField):
    """A JSON string only: DRF's own turns a number into its digits."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
