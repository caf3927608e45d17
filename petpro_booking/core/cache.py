"""Cache helpers: generation-keyed entries so one bump invalidates a whole family."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.core.cache import cache

logger = logging.getLogger(__name__)


def _generation_key(family: str) -> str:
    return f"gen:{family}"


def generation(family: str) -> int:
    value = cache.get(_generation_key(family))
    if value is None:
        cache.add(_generation_key(family), 1, timeout=None)
        value = cache.get(_generation_key(family)) or 1
    return int(value)


def bump_generation(family: str) -> None:
    """Invalidate every entry keyed under `family` (entries age out on their own TTL)."""
    try:
        cache.incr(_generation_key(family))
    except ValueError:
        cache.add(_generation_key(family), 2, timeout=None)


def keyed(prefix: str, families: list[str], params: dict[str, Any]) -> str:
    """A cache key that changes when any of `families` is bumped or `params` differ."""
    gens = ",".join(f"{family}={generation(family)}" for family in families)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]
    return f"{prefix}:{gens}:{digest}"
