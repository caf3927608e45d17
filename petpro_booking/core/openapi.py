"""OpenAPI: the error envelope documented on every operation."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorEnvelope = inline_serializer(
    name="ErrorEnvelope",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description='The ETag (`"<version>"`) you read; a stale one is 412 version_conflict.',
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[201],
    description="Path of the created resource.",
)
# Our ids are UUIDs; the router's pattern stays loose so a malformed one reaches the view and
# gets the JSON 404 instead of Django's HTML one.
UUID_PATH_PATTERN = r"[0-9a-fA-F-]{32,36}"

_DESCRIPTIONS = {
    400: "validation_error (details per field)",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict (see the error code)",
    412: "version_conflict",
    415: "unsupported_media_type",
    422: "idempotency_key_reused",
    429: "rate_limited (Retry-After)",
    503: "dependency_unavailable (details.dependency: a service, or the database, with "
    "Retry-After)",
}
# Answers any operation can give, whatever its own documentation says (503: every operation
# reads PostgreSQL, and a database that cannot serve is answered so, core/exception_handler.py).
ALWAYS = (400, 401, 403, 404, 405, 406, 415, 429, 503)


def error_responses(*status_codes: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(response=ErrorEnvelope, description=_DESCRIPTIONS[code])
        for code in status_codes
    }


def conflict_response(name: str, codes: list[str], description: str) -> OpenApiResponse:
    """A 409 whose envelope names the codes this operation can answer with (an enum)."""
    envelope = inline_serializer(
        name=name,
        fields={
            "error": inline_serializer(
                name=f"{name}Body",
                fields={
                    "code": serializers.ChoiceField(choices=codes),
                    "message": serializers.CharField(),
                    "details": serializers.DictField(),
                },
            )
        },
    )
    return OpenApiResponse(response=envelope, description=description)


class ErrorDocumentingAutoSchema(AutoSchema):
    """Adds the error envelope for the statuses every operation can answer, and for an
    operation taking an Idempotency-Key (`core.idempotency.idempotent`) the 409
    `idempotency_key_in_use` and 422 `idempotency_key_reused` the key can bring."""

    def _is_idempotent(self) -> bool:
        action = getattr(self.view, "action", None) or self.method.lower()
        return bool(getattr(getattr(self.view, action, None), "idempotent", False))

    def _get_response_bodies(self, direction="response"):  # type: ignore[no-untyped-def]
        responses = super()._get_response_bodies(direction)
        if self.method == "OPTIONS":
            return responses
        public = getattr(self.view, "public_endpoint", False)
        for code in ALWAYS:
            if public and code in (401, 403):
                continue
            key = str(code)
            if key not in responses:
                responses[key] = self._get_response_for_code(
                    error_responses(code)[code], key, direction=direction
                )
        if self._is_idempotent():
            for code in (409, 422):
                if str(code) not in responses:
                    responses[str(code)] = self._get_response_for_code(
                        error_responses(code)[code], str(code), direction=direction
                    )
        return responses
