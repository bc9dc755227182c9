"""The OpenAPI schema documents the errors every operation can answer, not only its success.

drf-spectacular documents a view's success response; DRF adds errors of its own (400 for a bad
body or query parameter, 401/403 for a missing token or role, 404 for an unknown id, 429 when
throttled). Each operation gets those that can happen to it, with the body DRF sends, so a
client (and schemathesis in tests/pairwise/test_schemathesis.py) can rely on the documented
status codes. A view documents its own further errors (a 409) with `extend_schema`.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong")


FIELD_ERRORS = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {},
        "description": "Each key names the field or query parameter that is wrong "
        "('non_field_errors' for the body as a whole, 'detail' for a body that does not parse), "
        "with a list of messages",
    },
    description="A field of the body or a query parameter is missing or wrong; the key names it",
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        params = operation.get("parameters", [])
        errors = {}
        if "requestBody" in operation or any(p["in"] == "query" for p in params):
            errors["400"] = FIELD_ERRORS
        if any(not isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()):
            errors["401"] = _error("No valid token or session")
            errors["403"] = _error("The account lacks the role this operation needs")
        if any(p["in"] == "path" for p in params):
            errors["404"] = _error("No such object, or none this account may reach")
        if self.view.get_throttles():
            errors["429"] = _error("Too many requests: the body says when to retry")
        for code, response in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code)
        return operation
