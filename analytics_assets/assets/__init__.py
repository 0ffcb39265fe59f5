"""Software-defined assets, grouped by source: pendo, amplitude, and analytics (both)."""

from analytics_assets.assets.accounts import analytics_assets
from analytics_assets.assets.amplitude import amplitude_assets
from analytics_assets.assets.pendo import pendo_assets

__all__ = ["amplitude_assets", "analytics_assets", "pendo_assets"]
