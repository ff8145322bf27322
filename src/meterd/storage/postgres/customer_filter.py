"""The `/*customers*/` slot of PostgreSQL queries: an optional filter on customer ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def customers_sql(
    customer_ids: Sequence[str] | None, params: dict[str, Any], column: str = "customer_id"
) -> str:
    """`AND column = ANY(...)` for the given customers (binding them into `params`).

    Empty when `customer_ids` is None (every customer); an empty list matches nobody.
    """
    if customer_ids is None:
        return ""
    params["customer_ids"] = list(customer_ids)
    return f"AND {column} = ANY(%(customer_ids)s::text[])"
