"""Page-number pagination: `{"count", "next", "previous", "results"}`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

from .errors import ValidationFailed


class PageQuery(serializers.Serializer):
    # Bounded so "(page - 1) * page_size" stays a number PostgreSQL takes as an OFFSET.
    page = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)


class PagePagination(PageNumberPagination):
    """DRF's page numbers, with the query checked as every other query is: `page=abc` or
    `page=0` and a `page_size` outside 1..100 are 400 `validation_error` naming the field
    (DRF answered 404 for the first and silently used 20 or 100 for the second); a page past
    the last stays 404."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        asked = {
            name: request.query_params[name]
            for name in ("page", "page_size")
            if name in request.query_params
        }
        query = PageQuery(data=asked)
        if not query.is_valid():
            raise ValidationFailed(
                details={
                    field: [str(m) for m in messages] for field, messages in query.errors.items()
                }
            )
        return super().paginate_queryset(queryset, request, view)
