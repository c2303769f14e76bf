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
