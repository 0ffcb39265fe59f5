"""The code location's one entry point: the components declared in ``defs/``.

``dagster dev``, ``dagster_cloud.yaml`` and ``workspace.yaml`` load this module; ``dg``
reads the same folder through ``[tool.dg]`` in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

defs: dg.Definitions = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
