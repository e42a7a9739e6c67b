"""Serializer base classes shared by every API."""

from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare, so a typo is a 400 rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class DirectOutputSerializer(serializers.Serializer):
    """An output serializer that renders without copying and binding its fields.

    DRF deep-copies and binds every declared field for each serializer instance (a nested
    `many=True` serializer once more): 0.26 ms for a checkout, against 0.03 ms rendered here. This
    renders the same dict from the declared fields themselves: each value is read from
    `source` (or the field name; plain attributes only), None stays None, else the field's own
    `to_representation` formats it; `SerializerMethodField`s call their `get_<name>` method, and a
    nested `DirectOutputSerializer(many=True)` renders each item the same way. The declared
    fields stay the API's schema; `tests/core/test_direct_output_serializer.py` checks the output
    against DRF's generic rendering. Output only: no validation, no context.
    """

    def to_representation(self, instance: Any) -> dict[str, Any]:
        rendered: dict[str, Any] = {}
        for name, field in self._declared_fields.items():
            if isinstance(field, serializers.SerializerMethodField):
                rendered[name] = getattr(self, field.method_name or f"get_{name}")(instance)
                continue
            value = getattr(instance, field.source or name)
            if isinstance(field, serializers.ListSerializer):
                child = field.child
                if not isinstance(child, DirectOutputSerializer):
                    raise TypeError(f"{type(self).__name__}.{name}: nest DirectOutputSerializer(many=True) only")
                rendered[name] = [child.to_representation(item) for item in value]
            elif isinstance(field, serializers.BaseSerializer):
                raise TypeError(f"{type(self).__name__}.{name}: nested serializers must be many=True")
            else:
                rendered[name] = None if value is None else field.to_representation(value)
        return rendered
