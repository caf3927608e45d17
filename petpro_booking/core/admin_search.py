"""Admin search by equality, every comparison served by an index.

Django's `=field` search compares `UPPER(field)` with `UPPER(term)` (iexact), for each field in
turn, ORs them and, for a field across a relation, joins the related table: no index serves
that, so every search read the whole table. With 500,000 bookings a search by reference took
5.3 s (docs/benchmarks.md), and it grows with the table until it passes the web timeout.

Here each field is compared with `=`, the term given the field's own type and form: a UUID
field takes a term only if it is a UUID (another term skips the field), a text field only up to
its length, and `search_normalisers` put a term in the form the column stores (a booking's
reference in capitals). Each comparison is one index scan, and the rows found are those whose
key is in the UNION of the scans. The encrypted columns are searched by their keyed hash
(`lookup_search_fields`), the plaintext never compared. Only the first SEARCH_MAX_TERMS words
are searched (each adds its scans to one statement: 200 words took 23 s to plan and run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Field, Model, QuerySet
from django.http import HttpRequest
from django.utils.text import smart_split, unescape_string_literal

from .crypto import lookup_hash

SEARCH_MAX_TERMS = 10


class IndexedSearchMixin:
    """Add to a ModelAdmin in place of `search_fields`:

    * `exact_search_fields`: field paths (`user_id`, `slot__id`), each with an index whose first
      column is that field: a row matches when one of them equals the term. Several terms
      (split as Django splits them, quotes kept together; the first SEARCH_MAX_TERMS) must
      each match.
    * `search_normalisers`: path -> the term as that column stores it.
    * `lookup_search_fields`: paths to `LookupHashField`s (e.g. `reservation__pet_name_lookup`):
      a row also matches when the keyed hash of the whole search text (case and outer spaces
      ignored) equals one of them.
    """

    model: type[Model]
    exact_search_fields: tuple[str, ...] = ()
    search_normalisers: dict[str, Callable[[str], str]] = {}
    lookup_search_fields: tuple[str, ...] = ()

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # Non-empty: the changelist shows its search box.
        return self.exact_search_fields + self.lookup_search_fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        terms = list(_terms(search_term))
        if len(terms) > SEARCH_MAX_TERMS:
            messages.warning(
                request,
                f"Only the first {SEARCH_MAX_TERMS} words of the search were searched.",
                fail_silently=True,
            )
        matching: QuerySet | None = None
        for term in terms[:SEARCH_MAX_TERMS]:
            found = self._keys_equal(
                (path, value)
                for path in self.exact_search_fields
                if (value := self._search_value(path, term)) is not None
            )
            matching = _intersection(matching, found)
        digest = lookup_hash(search_term)
        if digest and self.lookup_search_fields:
            hashed = self._keys_equal((path, digest) for path in self.lookup_search_fields)
            matching = hashed if matching is None else matching.union(hashed)
        if matching is None:
            return queryset.none(), False
        return queryset.filter(pk__in=matching), False

    def _search_value(self, path: str, term: str) -> Any:
        """`term` as the field at `path` holds it, or None when it cannot hold it."""
        normalise = self.search_normalisers.get(path)
        if normalise is not None:
            term = normalise(term)
        field = _field_at(self.model, path)
        try:
            value = field.to_python(term)
        except ValidationError:
            return None
        if isinstance(value, str) and field.max_length is not None:
            return value if len(value) <= field.max_length else None
        return value

    def _keys_equal(self, comparisons: Iterator[tuple[str, Any]]) -> QuerySet:
        """The keys of the rows where one of `comparisons` holds: one scan each, united."""
        scans = [
            self.model._default_manager.filter(**{path: value}).order_by().values("pk")
            for path, value in comparisons
        ]
        if not scans:
            return self.model._default_manager.none().values("pk")
        first, *rest = scans
        return first.union(*rest) if rest else first


def _terms(search_term: str) -> Iterator[str]:
    """The search text's terms, as Django's admin splits them ("two words" stay one)."""
    for term in smart_split(search_term):
        if term.startswith(('"', "'")) and term[0] == term[-1]:
            term = unescape_string_literal(term)
        if term:
            yield term


def _intersection(matching: QuerySet | None, found: QuerySet) -> QuerySet:
    return found if matching is None else matching.intersection(found)


def _field_at(model: type[Model], path: str) -> Field:
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model  # type: ignore[assignment]
    return model._meta.get_field(name)  # type: ignore[return-value]
