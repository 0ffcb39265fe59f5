"""The components of this package, for ``dg list components`` and ``defs.yaml`` files.

The package's top level re-exports them (``analytics_assets.PendoSync``), and the
``dagster_dg_cli.registry_modules`` entry point names the package, so ``dg list components``
shows those short names and a project that installs this package can ``dg scaffold defs
analytics_assets.PendoSync <path>``.
"""

from analytics_assets.alerts.component import ChangeAlerts
from analytics_assets.amplitude.component import AmplitudeSync
from analytics_assets.analytics.component import AccountAnalytics
from analytics_assets.crm_writeback.component import CrmToPendo
from analytics_assets.jobs import SyncJobs
from analytics_assets.pendo.component import PendoSync
from analytics_assets.warehouse.component import Warehouse

__all__ = [
    "AccountAnalytics",
    "AmplitudeSync",
    "ChangeAlerts",
    "CrmToPendo",
    "PendoSync",
    "SyncJobs",
    "Warehouse",
]
