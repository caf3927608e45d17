"""Admin search over encrypted columns: the search term's keyed hash against a lookup column."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import HttpRequest

from .crypto import lookup_hash


class LookupHashSearchMixin:
    """Add to a ModelAdmin with `lookup_search_fields` (paths to `LookupHashField`s, e.g.
    `reservation__pet_name_lookup`): a search term then also matches rows whose hashed field
    equals it exactly (case and outer spaces ignored). The plaintext is never compared."""

    lookup_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        found, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        digest = lookup_hash(search_term)
        if digest and self.lookup_search_fields:
            hashed = Q()
            for path in self.lookup_search_fields:
                hashed |= Q(**{path: digest})
            found = found | queryset.filter(hashed)
            may_have_duplicates = may_have_duplicates or any(
                "__" in path for path in self.lookup_search_fields
            )
        return found, may_have_duplicates
