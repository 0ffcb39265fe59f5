"""The code location's one entry point: the components declared in ``defs/``.

``dagster dev``, ``dagster_cloud.yaml`` and ``workspace.yaml`` load this module; ``dg``
reads the same folder through ``[tool.dg]`` in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from analytics_assets.warehouse.asset_kinds import with_warehouse_kind

# The assets' warehouse kind names the backend the `warehouse` component binds.
defs: dg.Definitions = with_warehouse_kind(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
)
