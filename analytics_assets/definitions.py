"""The one Definitions object of the code location: everything, wired together.

This is the only module that knows the whole: assets, checks, jobs, schedules,
sensors, and the resources chosen from the environment.
"""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions(assets=[])
