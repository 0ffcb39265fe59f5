"""Cohorts, taxonomy, user profile, user search and user activity for one region's project.

``routes.build_amplitude`` mounts what :func:`extra_routes` returns for each tenant.
Building the routes also sets ``tenant.cohort_members`` so Dashboard queries can
segment by ``userdata_cohort`` with the same memberships the cohort API serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute

from analytics_assets.sandbox.amplitude.catalog import (
    CUSTOM_USER_PROPS,
    FEATURE_PREFIX,
    PAGE_VIEWED,
    PURCHASE,
    SESSION_START,
    SIGN_UP,
    TRACKED,
)
from analytics_assets.sandbox.amplitude.cohort_routes import cohort_routes
from analytics_assets.sandbox.amplitude.cohorts import CohortStore
from analytics_assets.sandbox.amplitude.profile import profile_routes
from analytics_assets.sandbox.amplitude.taxonomy import TaxonomySeed
from analytics_assets.sandbox.amplitude.taxonomy_routes import taxonomy_routes
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.amplitude.users import UserDirectory, user_routes

TRACKED_NAMES = {name for name, *_ in TRACKED}


def _category(event_type: str) -> str:
    if event_type in (SESSION_START, SIGN_UP):
        return "Lifecycle"
    if event_type == PAGE_VIEWED:
        return "Navigation"
    if event_type.startswith(FEATURE_PREFIX):
        return "Features"
    if event_type == PURCHASE:
        return "Revenue"
    return "Product" if event_type in TRACKED_NAMES else "Other"


def taxonomy_seed(tenant: AmplitudeTenant) -> TaxonomySeed:
    """The tracking plan as the project's data shows it (Amp-A's event catalog)."""
    catalog = tenant.events.catalog
    names = catalog.type_names()[: catalog.synthetic_type_count]
    props: dict[int, list[str]] = {i: [] for i in range(len(names))}
    for variant in catalog.variants:
        for key in variant.properties:
            if variant.etype < len(names) and key not in props[variant.etype]:
                props[variant.etype].append(key)
    used_by: dict[str, int] = {}
    for keys in props.values():
        for key in keys:
            used_by[key] = used_by.get(key, 0) + 1
    return TaxonomySeed(
        event_types=tuple((name, _category(name), tuple(props[i])) for i, name in enumerate(names)),
        # A property several event types send is also a shared property of the plan.
        shared_event_properties=tuple(sorted(k for k, n in used_by.items() if n > 1)),
        user_properties=tuple(CUSTOM_USER_PROPS),
        group_types=("account",),
        group_properties=tuple(catalog.group_properties(0)) if tenant.company.n_accounts else (),
    )


def extra_routes(tenant: AmplitudeTenant) -> list[BaseRoute]:
    """Every route of this module's APIs for one region's tenant."""
    directory = UserDirectory(tenant)
    cohorts = CohortStore(tenant, directory)
    tenant.cohort_members = cohorts.members_for_query
    c_routes, cohort_http = cohort_routes(tenant, cohorts, directory)
    t_routes, _, taxonomy_limits = taxonomy_routes(
        tenant, taxonomy_seed(tenant), observed=tenant.events.catalog.type_names
    )
    p_routes, profile = profile_routes(tenant, directory, cohorts)
    parts = [cohort_http.describe, taxonomy_limits.describe]
    if profile is not None:
        parts.append(profile.describe)
    _extend_describe(tenant, parts)
    return [*c_routes, *t_routes, *p_routes, *user_routes(tenant, directory)]


def _extend_describe(tenant: AmplitudeTenant, parts: list[Callable[[], dict[str, Any]]]) -> None:
    """Add these limiters to ``tenant.describe()`` (what ``GET /_sandbox/limits`` shows),
    so tests see what they refused and how many requests hold a slot. The tenant has no
    hook for it; wrapping the bound method on the instance keeps its file untouched."""
    base = tenant.describe

    def describe() -> dict[str, Any]:
        out = dict(base())
        for part in parts:
            out.update(part())
        return out

    tenant.describe = describe  # type: ignore[method-assign]
