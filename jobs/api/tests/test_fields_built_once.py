"""apikit.serializers.FieldsBuiltOnce: fields built once per class, a copy bound to each
serializer — the same answers and errors as DRF's per-instance build."""

from __future__ import annotations

from rest_framework import serializers

from jobs.api.serializers import JobSerializer, JobSubmitSerializer


def test_each_serializer_binds_fields_of_its_own():
    first, second = JobSubmitSerializer(data={}), JobSubmitSerializer(data={})
    for name in ("type", "priority", "depends_on"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    assert first.fields["depends_on"].child is not second.fields["depends_on"].child  # a field inside: its own
    for serializer in (first, second):
        inside = serializer.fields["depends_on"].child
        assert inside.parent is serializer.fields["depends_on"] and inside.root is serializer


def test_a_many_relation_renders_through_a_child_of_its_own():
    first, second = JobSerializer(), JobSerializer()
    assert first.fields["depends_on"].child_relation is not second.fields["depends_on"].child_relation
    for serializer in (first, second):
        inside = serializer.fields["depends_on"].child_relation
        assert inside.parent is serializer.fields["depends_on"] and inside.root is serializer


def test_errors_name_their_field_and_stay_with_their_serializer():
    bad = JobSubmitSerializer(data={"type": "x" * 101, "priority": "urgent", "depends_on": ["nope"]})
    good = JobSubmitSerializer(data={"type": "diagnostics.noop", "priority": "low", "depends_on": []})
    assert not bad.is_valid() and good.is_valid(), good.errors
    assert set(bad.errors) == {"type", "priority", "depends_on"}
    assert good.validated_data["priority"] == "low" and good.validated_data["payload"] == {}


def test_the_built_fields_are_never_bound():
    JobSerializer().fields  # noqa: B018  # builds the class's fields
    JobSubmitSerializer().fields  # noqa: B018
    for cls in (JobSerializer, JobSubmitSerializer):
        built = JobSubmitSerializer._built_fields[cls]
        assert built and all(getattr(field, "parent", None) is None for _, field, _ in built)
        assert all(isinstance(field, serializers.Field) for _, field, _ in built)
