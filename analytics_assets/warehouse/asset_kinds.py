"""The warehouse's kind on every asset it stores, named after the bound backend.

A Dagster kind is fixed when the definitions load, and the factories build their assets
without knowing which warehouse the project binds (that is another component's setting).
So every table they write carries the placeholder kind ``warehouse``, true whatever the
backend, and ``with_warehouse_kind`` turns it into the backend of the bound ``warehouse``
resource (``duckdb``, ``postgres``, ``snowflake``) once the definitions are whole. The
code location does this in ``definitions.py``; a project that uses the library API can do
the same in its own.
"""

from __future__ import annotations

import warnings

import dagster as dg

from analytics_assets.warehouse.base import WarehouseResource

#: The kind the factories give every table they write, until the backend is known.
WAREHOUSE_KIND = "warehouse"


def with_warehouse_kind(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with the placeholder kind ``warehouse`` replaced by the backend of its
    ``warehouse`` resource. Unchanged when no warehouse resource is bound."""
    resource = (defs.resources or {}).get("warehouse")
    if not isinstance(resource, WarehouseResource):
        return defs
    backend = resource.backend

    def name_backend(spec: dg.AssetSpec) -> dg.AssetSpec:
        if WAREHOUSE_KIND not in spec.kinds:
            return spec
        return spec.replace_attributes(kinds=(set(spec.kinds) - {WAREHOUSE_KIND}) | {backend})

    # map_asset_specs is stable API, but 1.13 implements it with a preview method and
    # warns once per load about that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=name_backend)
