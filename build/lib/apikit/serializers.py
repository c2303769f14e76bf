"""Serializer behaviour every endpoint shares."""

from rest_framework import serializers


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
