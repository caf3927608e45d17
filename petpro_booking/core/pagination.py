"""Page-number pagination: `{"count", "next", "previous", "results"}`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

from .errors import ValidationFailed

MAX_PAGE = 1_000_000


class PageQuery(serializers.Serializer):
    # Whole numbers written as digits ("5.0" and "last" are not pages). Bounded so
    # "(page - 1) * page_size" stays a number PostgreSQL takes as an OFFSET.
    page = serializers.RegexField(r"^[0-9]{1,7}$", required=False)
    page_size = serializers.RegexField(r"^[0-9]{1,3}$", required=False)

    def validate_page(self, value: str) -> int:
        if not 1 <= int(value) <= MAX_PAGE:
            raise serializers.ValidationError("Ensure this value is between 1 and 1000000.")
        return int(value)

    def validate_page_size(self, value: str) -> int:
        if not 1 <= int(value) <= PagePagination.max_page_size:
            raise serializers.ValidationError("Ensure this value is between 1 and 100.")
        return int(value)


class PagePagination(PageNumberPagination):
    """DRF's page numbers, with the query checked as every other query is: a `page` or
    `page_size` that is not a whole number in range (`abc`, `0`, `5.0`, `100000`) is 400
    `validation_error` naming the field, where DRF answered 404 for the first and silently
    used 20 or 100 for the second; an empty one counts as absent; a page past the last stays
    404. The numbers used are the checked ones."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        asked = {
            name: request.query_params[name]
            for name in ("page", "page_size")
            if request.query_params.get(name, "") != ""
        }
        query = PageQuery(data=asked)
        if not query.is_valid():
            raise ValidationFailed(
                details={field: [str(m) for m in errors] for field, errors in query.errors.items()}
            )
        self._checked = query.validated_data
        return super().paginate_queryset(queryset, request, view)

    def paginate_checked(
        self, queryset: Any, request: Any, view: Any, *, page: int, page_size: int
    ) -> Any:
        """For a view whose own query serializer already checked `page` and `page_size` (the
        slot search): no second check on its hot path."""
        self._checked = {"page": page, "page_size": page_size}
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """DRF's two parameters with the bounds the query is checked against, so a client
        generated from the schema (or a schema-driven test) knows `page_size=0` is refused."""
        bounds = {"page": (1, MAX_PAGE), "page_size": (1, self.max_page_size)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters

    def get_page_number(self, request: Any, paginator: Any) -> Any:
        return getattr(self, "_checked", {}).get("page", 1)

    def get_page_size(self, request: Any) -> int:
        return getattr(self, "_checked", {}).get("page_size", self.page_size)
